"""Caption training datasets beyond one folder: one job description, two engines, one canonical result.

    job = DatasetJob(source=SourceSpec(paths=("shards/*.tar",)), model="JTP_PILOT2", output=Path("out"))
    summary = run_local(job)            # or run_ray(job, address="auto")
    export_kohya(Path("out"), Path("meta.json"))

The canonical result is a Parquet dataset under ``<output>/parts`` (one row per image; see ``records``). The
job folder also holds ``_jtp_manifest.json``: the model+options fingerprint, the planned units (a shard, a
Parquet file, or a chunk of a folder's images) and which of them are done. Rerunning the same job skips the
done units; each unit's rows land in one atomically renamed file, so no row is ever written twice or half.
Nothing here imports Ray or pyarrow at module load; ``ray_engine`` asks for them when it runs.
"""

from .job import DatasetJob, MergeSpec, SourceSpec

__all__ = ["DatasetJob", "MergeSpec", "SourceSpec"]
