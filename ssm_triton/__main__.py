import sys

from ._paths import drop_checkout_root
from .cli import main

drop_checkout_root()   # `python -m ssm_triton` from the clone's root put it first on sys.path
sys.exit(main())
