-- Stores event jobs. ARGV: prefix, count, then per job: name, params, priority, run_at (ms, or ''
-- for relative), delay (ms after now), unique identifier (or '').
-- Returns per job: 1 and the new id, or 0 and the id of the live job with the same name and
-- unique identifier.
local now = now_ms()
local count = tonumber(ARGV[2])
local out = {}
local due = false
for i = 0, count - 1 do
  local b = 3 + i * 6
  local name, uid = ARGV[b], ARGV[b + 5]
  local existing = false
  if uid ~= '' then
    existing = call('HGET', key('unique'), unique_field(name, uid))
  end
  if existing then
    out[#out + 1] = 0
    out[#out + 1] = tonumber(existing)
  else
    local id = tostring(call('INCR', key('seq')))
    local run_at = now + tonumber(ARGV[b + 4])
    if ARGV[b + 3] ~= '' then
      run_at = tonumber(ARGV[b + 3])
    end
    local job = {
      name = name, kind = 'event', params = ARGV[b + 1], priority = ARGV[b + 2],
      run_at = run_at, tries = 0, state = pending_or_scheduled(run_at, now), demoted = '0',
      created_at = now,
    }
    if uid ~= '' then
      job.uid = uid
      call('HSET', key('unique'), unique_field(name, uid), id)
    end
    put(id, job)
    call('ZADD', key('jobs'), id, id)
    call('ZADD', key('byname', name), id, id)
    if index(id, job) then
      due = true
    end
    out[#out + 1] = 1
    out[#out + 1] = tonumber(id)
  end
end
if due then
  wake()
end
return out
