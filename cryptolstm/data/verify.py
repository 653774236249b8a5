"""Is the data on disk still the data a run used? Compares sha256 fingerprints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptolstm.data import snapshots
from cryptolstm.errors import DataError


@dataclass(frozen=True)
class Verdict:
    """``same``: the current data of ``data_dir`` is byte-identical to the run's; ``message``: one sentence."""

    same: bool
    message: str


def verify(run_id: str, tags: dict[str, str], data_dir: str | Path) -> Verdict:
    """Compare the run's fingerprints with ``data_dir``'s current data, then with every snapshot it keeps."""
    # coin -> sha256 of the file the run read, from its ``data.sha256.<coin>`` tags
    wanted = {k.rsplit(".", 1)[1].upper(): v for k, v in tags.items() if k.startswith("data.sha256.")}
    if not wanted:
        raise DataError(f"run {run_id} recorded no data fingerprints (data.sha256.* tags); it is not a cryptolstm run.")
    used = tags.get("data.snapshot") or "files"
    directory = snapshots.resolve(data_dir)
    on_disk = {coin: snapshots.sha256(snapshots.coin_file(directory, coin))
               for coin in wanted if snapshots.coin_file(directory, coin).is_file()}
    if on_disk == wanted:
        return Verdict(True, f"the data in {data_dir} is the data run {run_id} used "
                             f"({used}; sha256 {', '.join(f'{c} {h[:12]}' for c, h in sorted(wanted.items()))}).")
    for snap in snapshots.all_snapshots(data_dir):
        if {c: f.sha256 for c, f in snap.coins.items() if c in wanted} == wanted:
            return Verdict(False, f"the current data in {data_dir} is not what run {run_id} used, but its snapshot "
                                  f"{snap.id} is still in {Path(data_dir) / 'snapshots' / snap.id}.")
    differ = sorted(c for c in wanted if on_disk.get(c) != wanted[c])
    details = ", ".join(f"{c} {on_disk[c][:12] if c in on_disk else 'missing'} (run: {wanted[c][:12]})" for c in differ)
    return Verdict(False, f"the data in {data_dir} is not the data run {run_id} used, and no snapshot there "
                          f"matches it: {details}.")
