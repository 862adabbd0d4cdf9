"""Times batch matching (Flight `DoExchange`) against a running hub.

Keys are read from the table's own Parquet files, 250 from each of `--row-groups` row groups
chosen at random, so a batch touches pages all over the table as real batches do. Each batch
size is sent `--repeat` times with a fresh sample; the time of each call (send every key,
receive every match) and keys per second are printed.

    python benches/batch_match.py --server grpc://127.0.0.1:50071 \
        --files /data/big/tables/population/residents --token "$(citybrain token ...)"

The token's department needs a read grant of the table for `--purpose` (`citybrain bench`
obtains one for department `bench-load` and purpose `benchmark load test`).
"""

import argparse
import glob
import json
import random
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pyarrow.parquet as pq


def sample_keys(files, column, row_groups, per_group, rng):
    parquet = [pq.ParquetFile(f) for f in files]
    keys = []
    for _ in range(row_groups):
        pf = rng.choice(parquet)
        g = rng.randrange(pf.num_row_groups)
        col = pf.read_row_group(g, columns=[column]).column(0)
        rows = rng.sample(range(len(col)), min(per_group, len(col)))
        keys += pc.take(col, pa.array(rows)).to_pylist()
    rng.shuffle(keys)
    return keys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="grpc://127.0.0.1:50051")
    ap.add_argument("--token", required=True)
    ap.add_argument("--files", required=True, help="directory of the table's Parquet files")
    ap.add_argument("--table", default="population.residents")
    ap.add_argument("--key-column", default="id_number")
    ap.add_argument("--purpose", default="benchmark load test")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--row-groups", type=int, default=400)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()

    rng = random.Random(a.seed)
    files = sorted(glob.glob(f"{a.files}/*.parquet"))
    keys = sample_keys(files, a.key_column, a.row_groups, 250, rng)
    client = flight.FlightClient(a.server)
    opts = flight.FlightCallOptions(
        headers=[(b"authorization", b"Bearer " + a.token.encode())]
    )
    cmd = json.dumps({"table": a.table, "purpose": a.purpose}).encode()

    for n in (int(s) for s in a.sizes.split(",")):
        for _ in range(a.repeat):
            batch = pa.table({"key": rng.sample(keys, min(n, len(keys)))})
            started = time.perf_counter()
            writer, reader = client.do_exchange(
                flight.FlightDescriptor.for_command(cmd), opts
            )
            writer.begin(batch.schema)
            writer.write_table(batch, max_chunksize=10_000)
            writer.done_writing()
            matched = reader.read_all().num_rows
            secs = time.perf_counter() - started
            print(
                f"batch of {batch.num_rows} keys: {secs * 1000:.0f} ms, "
                f"{batch.num_rows / secs:,.0f} keys/s, {matched} rows matched"
            )


if __name__ == "__main__":
    main()
