"""Keep the libraries' routine warnings, loading bars and request logs out of the studio's
output (the app's and the command line's alike)."""

import logging
import warnings

LIBRARIES = ("diffusers", "transformers", "huggingface_hub", "peft", "accelerate", "torch")


def quiet_libraries() -> None:
    for name in ("diffusers", "transformers", "huggingface_hub", "httpx", "httpcore", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR if name not in ("httpx", "httpcore")
                                         else logging.WARNING)
    try:
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        dlog.set_verbosity_error()
        dlog.disable_progress_bar()
        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except ImportError:
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:
        pass
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*torchvision.*")
    warnings.filterwarnings("ignore", category=UserWarning,
                            module=r"(%s)(\.|$)" % "|".join(LIBRARIES))
    warnings.filterwarnings("ignore", category=DeprecationWarning,
                            module=r"(%s)(\.|$)" % "|".join(LIBRARIES))
