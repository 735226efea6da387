"""train.py with a final report that takes SLOW_REPORT_SECONDS first (tests/test_distributed.py launches it
under torchrun): rank 0 works on for that long after rank 1 has nothing left to do."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import train  # noqa: E402

report = train.final_report


def slow_report(*args) -> None:
    time.sleep(float(os.environ["SLOW_REPORT_SECONDS"]))
    report(*args)


if __name__ == "__main__":
    train.final_report = slow_report
    train.main(sys.argv[1:])
