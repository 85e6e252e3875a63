"""Train a live/dead classifier: `python train.py experiment=doxo_inception -m model=resnet18,squeezenet`.

The task is stainfree.tasks.train; see conf/train.yaml for the options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # a checkout works without `pip install -e`
from stainfree.utils.cli import run_cli  # noqa: E402

if __name__ == "__main__":
    run_cli("stainfree.tasks.train")
