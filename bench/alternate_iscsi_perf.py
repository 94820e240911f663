"""An independent check of bench/target_vs_tgt.py: libiscsi's iscsi-perf run as it is, in
rounds that alternate between sanstack's target and tgt, printing iscsi-perf's own average.

Not a test. Both targets are started as target_vs_tgt.py starts them (bench/targets.py: a
fully written, page-cached 1 GiB file each); nothing of that script's parsing or CPU
accounting is used here.

    python bench/alternate_iscsi_perf.py [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.targets import SanstackTarget, TgtTarget, warm_page_cache, write_backing_file

SIZE = 1 << 30
WORKLOADS = (("4k-rand QD32", 8, 32, True), ("1m-seq QD8", 2048, 8, False))
AVERAGE = re.compile(r"iops average (\d+) \((\d+) MB/s\)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    tools = {name: shutil.which(name) for name in ("iscsi-perf", "tgtd", "tgtadm")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        print(f"missing: {', '.join(missing)} (scripts/install-deps installs them)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = {name: work / f"{name}.img" for name in ("sanstack", "tgt")}
        for path in files.values():
            write_backing_file(path, SIZE)
            warm_page_cache(path)
        sanstack = SanstackTarget(sys.executable, work, files["sanstack"], SIZE)
        tgt = TgtTarget(str(tools["tgtd"]), str(tools["tgtadm"]), work, files["tgt"])
        sanstack.start()
        tgt.start()
        try:
            for title, blocks, depth, random in WORKLOADS:
                for round_no in range(args.rounds):
                    order = (sanstack, tgt) if round_no % 2 == 0 else (tgt, sanstack)
                    for target in order:
                        command = [str(tools["iscsi-perf"]), "-t", str(args.seconds)]
                        command += ["-m", str(depth), "-b", str(blocks)]
                        command += ["-r"] if random else []
                        run = subprocess.run(
                            [*command, target.url],
                            capture_output=True,
                            text=True,
                            timeout=args.seconds + 60,
                            check=False,
                        )
                        found = AVERAGE.findall(run.stdout)
                        iops, mb_s = found[-1] if found else ("?", "?")
                        print(
                            f"{title} round {round_no + 1} {target.name:9} IOPS {iops} MB/s {mb_s}",
                            flush=True,
                        )
        finally:
            sanstack.stop()
            tgt.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
