-- wrk script: POST one model request again and again; count answers that are not whole and good.
-- env: BODY (path of the JSON body), KEY (bearer token), EXPECT (text every good answer ends with),
-- WRK_PATH (the endpoint; default /v1/chat/completions)
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.method = "POST"
wrk.path = os.getenv("WRK_PATH") or "/v1/chat/completions"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("KEY") or "none")
local expect = os.getenv("EXPECT") or ""

local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0; sample = "" end

function response(status, headers, body)
  if status ~= 200 or (expect ~= "" and not string.find(body, expect, 1, true)) then
    bad = bad + 1
    if sample == "" then sample = status .. " " .. string.sub(body or "", 1, 160) end
  end
end

function done(summary, latency, requests)
  local bad_total, first = 0, ""
  for _, t in ipairs(threads) do
    bad_total = bad_total + t:get("bad")
    if first == "" then first = t:get("sample") or "" end
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"secs":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"bad":%d,"socket_errors":%d,"sample":"%s"}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad_total,
    e.connect + e.read + e.write + e.timeout, string.gsub(first, '[%c"\\]', " ")))
end
