"""The feature store: every image encoded once per encoder, kept by content, in complete shards.

- `store`: shards (one complete `.npz` file each, renamed into place) and the SQLite index
  from (encoder, image digest) to shard and row; statistics, garbage collection, repair.
- `digests`: images' content digests, remembered by path, size and mtime.
- `encoders`: what an encoder is (identity, output layout) and the LiteRT runner of one.
- `shards`: the pure per-shard function (decode, encode, write one file) and the planner.
- `engines`: thin distributors around it: in-process, Ray, or one slice of a batch array.
"""
