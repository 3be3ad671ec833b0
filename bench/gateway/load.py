"""Fixed-count load for bench/gateway/profile.sh: N keep-alive POSTs, one at a time.
  load.py HOST PORT PATH N [API_KEY]"""
import http.client, sys, json
host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
key = sys.argv[5] if len(sys.argv) > 5 else None
c = http.client.HTTPConnection(host, port, timeout=60)
h = {"Content-Type": "application/json"}
if key: h["x-api-key"] = key
bad = 0
for i in range(n):
    c.request("POST", path, body=b'{"hello":"world","n":42}', headers=h)
    r = c.getresponse(); r.read()
    if r.status != 200: bad += 1
print("done", n, "bad", bad)
