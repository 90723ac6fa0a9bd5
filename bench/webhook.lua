-- Realistic native-webhook bodies: a distinct recipient and event id per request, authenticated.
-- Every request is a soft bounce, or every HARD_EVERY-th one (environment) a hard bounce, whose
-- threshold action makes its batch take the transactional path of the recorder.
local counter = 0
local hard_every = tonumber(os.getenv("HARD_EVERY") or "0")
local thread_id = 0
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  thread_id = id
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "token bench:bench-token"

function request()
  counter = counter + 1
  local kind = "soft"
  if hard_every > 0 and counter % hard_every == 0 then kind = "hard" end
  local body = string.format(
    '{"email":"user%d.%d@example.com","type":"%s","source":"bench","event_id":"%d-%d",' ..
    '"meta":{"smtp":"452 4.2.2 Mailbox full","mta":"mx1.example.net"}}',
    thread_id, counter, kind, thread_id, counter)
  return wrk.format(nil, "/webhooks/bounce", nil, body)
end
