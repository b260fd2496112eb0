"""torchrun, tied to the life of the process that started it: `python -m lorastudio.engine.training.torchrun
ARGS` is `torchrun ARGS`, except that it gets a SIGTERM (and so stops its ranks) when its parent dies, even
a SIGKILLed one whose clean-up never ran."""

from __future__ import annotations

import os
import signal
import sys

from lorastudio.engine.training.lifetime import die_with_parent

if __name__ == "__main__":
    parent = os.getppid()
    die_with_parent(signal.SIGTERM, parent)
    from torch.distributed.run import main

    sys.exit(main(sys.argv[1:]))
