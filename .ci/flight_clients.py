"""Flight clients we did not write, against the real hub: ADBC Flight SQL and pyarrow.flight.

Checks: a governed joined query answers with masked, row-filtered data; the catalog listing shows
only granted tables and columns; an ungranted column and a non-query are refused; a batch match
over DoExchange returns exactly the visible keys and agrees with the SQL answer.
"""

import json
import os
import sys
import urllib.parse

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.flight as flight
from adbc_driver_flightsql import DatabaseOptions

ADDR = os.environ["CITYBRAIN_ADDR"]
TOKEN = os.environ["CITYBRAIN_TOKEN"]
PURPOSE = os.environ["CITYBRAIN_PURPOSE"]
TOWN = "桂城街道"
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


conn = flightsql.connect(
    f"grpc://{ADDR}",
    db_kwargs={
        DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {TOKEN}",
        DatabaseOptions.RPC_CALL_HEADER_PREFIX.value + "x-citybrain-purpose": urllib.parse.quote(PURPOSE),
    },
)
cur = conn.cursor()

cur.execute("SELECT id_number, name, town FROM population.residents ORDER BY id_number")
people = cur.fetch_arrow_table()
check(people.num_rows > 0, f"ADBC: governed query answers ({people.num_rows} rows)")
check(set(people.column("town").to_pylist()) == {TOWN}, "ADBC: row filter holds (one town only)")
check(
    all(n[1:] == "*" * (len(n) - 1) for n in people.column("name").to_pylist()),
    "ADBC: names are masked to their first character",
)

cur.execute(
    "SELECT r.town, count(*) AS firms FROM legal.entities e "
    "JOIN population.residents r ON e.legal_rep_id = r.id_number GROUP BY r.town"
)
joined = cur.fetch_arrow_table().to_pylist()
check(len(joined) == 1 and joined[0]["town"] == TOWN and joined[0]["firms"] > 0,
      f"ADBC: residents joined to legal entities by representative, counted by town: {joined}")

objects = conn.adbc_get_objects(depth="columns").read_all().to_pylist()
tables = {}
for catalog in objects:
    for schema in catalog["catalog_db_schemas"] or []:
        for table in schema["db_schema_tables"] or []:
            cols = [c["column_name"] for c in table["table_columns"] or []]
            tables[f'{schema["db_schema_name"]}.{table["table_name"]}'] = cols
check(set(tables) == {"population.residents", "legal.entities"}, f"ADBC: catalog lists the granted tables only: {sorted(tables)}")
check(tables.get("population.residents") == ["id_number", "name", "birth_date", "town"],
      f"ADBC: listed columns are the granted ones: {tables.get('population.residents')}")

for sql, expect in [
    ("SELECT ethnicity FROM population.residents", "ethnicity"),
    ("DROP TABLE population.residents", "only queries"),
]:
    try:
        cur.execute(sql)
        cur.fetch_arrow_table()
        check(False, f"ADBC: refused: {sql}")
    except Exception as e:  # the driver raises its own DB-API error classes
        check(expect in str(e), f"ADBC: refused: {sql}")
cur.close()
conn.close()

# Batch match over DoExchange with pyarrow.flight: the keys the SQL answer showed.
client = flight.FlightClient(f"grpc://{ADDR}")
options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
visible = people.column("id_number").to_pylist()[:50]
command = json.dumps({"table": "population.residents", "purpose": PURPOSE}).encode()
writer, reader = client.do_exchange(flight.FlightDescriptor.for_command(command), options)
keys = pa.table({"key": pa.array(visible, pa.string())})
writer.begin(keys.schema)
writer.write_table(keys)
writer.done_writing()
matched = reader.read_all()
writer.close()
check(matched.column_names == ["key", "id_number", "name", "birth_date", "town"],
      f"pyarrow.flight: match answers key + granted columns: {matched.column_names}")
check(sorted(matched.column("key").to_pylist()) == sorted(visible), "pyarrow.flight: every visible key matched")
by_key = dict(zip(people.column("id_number").to_pylist(), people.column("name").to_pylist()))
check(all(by_key[k] == n for k, n in zip(matched.column("key").to_pylist(), matched.column("name").to_pylist())),
      "pyarrow.flight: batch match and SQL agree")

try:
    w, r = client.do_exchange(flight.FlightDescriptor.for_command(command), flight.FlightCallOptions())
    w.begin(keys.schema)
    w.write_table(keys)
    w.done_writing()
    r.read_all()
    check(False, "pyarrow.flight: no token is refused")
except flight.FlightUnauthenticatedError:
    check(True, "pyarrow.flight: no token is refused")

print(f"flight clients: {len(failures)} failed")
sys.exit(1 if failures else 0)
