-- Stores event jobs. ARGV: prefix, count, then per job: name, params, priority, run_at (ms, or ''
-- for relative), delay (ms after now), unique identifier (or ''), '1' to replace a pending
-- duplicate ('0' to keep it), and the trace context (or '').
-- Returns per job: 1 and the new id, 0 and the id of the live job with the same name and
-- unique identifier, or 2 and its id when it was pending and took the new params, priority and
-- run time.
local now = now_ms()
local count = tonumber(ARGV[2])
local out = {}
local due = false
local names = {}
for i = 0, count - 1 do
  local b = 3 + i * 8
  local name, uid = ARGV[b], ARGV[b + 5]
  local existing = false
  if uid ~= '' then
    existing = call('HGET', key('unique'), unique_field(name, uid))
  end
  local replaced = false
  if existing and ARGV[b + 6] == '1' then
    local job = load(existing)
    local running = job and job.state == 'running' and tonumber(job.locked_until)
      and tonumber(job.locked_until) > now
    if job and job.name and not running and job.state ~= 'failed' then
      unindex(existing, job)
      local run_at = now + tonumber(ARGV[b + 4])
      if ARGV[b + 3] ~= '' then
        run_at = tonumber(ARGV[b + 3])
      end
      -- A lease that ran out is no longer its holder's: the job is another now.
      call('HDEL', key('job', existing), 'token', 'locked_until', 'locked_by', 'progress')
      job.token = nil
      job.params = ARGV[b + 1]
      job.priority = ARGV[b + 2]
      job.run_at = run_at
      job.state = pending_or_scheduled(run_at, now)
      put(existing, { params = job.params, priority = job.priority, run_at = run_at, state = job.state })
      if index(existing, job) then
        due = true
      end
      replaced = true
    end
  end
  if replaced then
    out[#out + 1] = 2
    out[#out + 1] = tonumber(existing)
  elseif existing then
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
    if ARGV[b + 7] ~= '' then
      job.trace = ARGV[b + 7]
    end
    put(id, job)
    call('ZADD', key('jobs'), id, id)
    call('ZADD', key('byname', name), id, id)
    names[name] = true
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
for name in pairs(names) do
  call('SADD', key('names'), name)
end
return out
