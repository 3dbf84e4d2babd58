"""Public ops: validation, then a ``torch.library`` custom op with autograd, then the launchers."""
