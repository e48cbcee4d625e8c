-- wrk script: POST /subscribe with a new address on every request (thread id + counter),
-- like a stream of distinct people opting in.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

-- Each thread's Lua state starts with the same random sequence (and thread:set does not
-- reach it before the first request), so each seeds its own from its state's address.
function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 1000000007)
end

function request()
  counter = counter + 1
  local body = "email=bench" .. thread_id .. "-" .. counter .. "-" .. math.random(1, 1000000000)
    .. "%40example.com&name=Bench+Person&employees=12&consent=yes"
  return wrk.format("POST", "/subscribe",
    { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
end
