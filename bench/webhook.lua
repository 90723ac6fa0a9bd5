-- Realistic native-webhook bodies: a distinct recipient and event id per request, authenticated.
local counter = 0
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
  local body = string.format(
    '{"email":"user%d.%d@example.com","type":"soft","source":"bench","event_id":"%d-%d",' ..
    '"meta":{"smtp":"452 4.2.2 Mailbox full","mta":"mx1.example.net"}}',
    thread_id, counter, thread_id, counter)
  return wrk.format(nil, "/webhooks/bounce", nil, body)
end
