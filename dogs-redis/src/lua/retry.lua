-- Puts failed jobs back to run now, or makes a pending job due now. ARGV: prefix, then 'id' and
-- the id, or 'name', the name, the most jobs to put back and the id to go on after ('' for the
-- first).
-- For 'id': 1 when done, 0 when there is no such job, -1 when it is running (or was cancelled
-- while it ran and its lease has not ended), -2 when another live job holds its unique
-- identifier. For 'name': how many it found, how many it put back, and the last id it looked at.
local now = now_ms()

local function visible(job)
  return job and job.name and not (job.state == 'failed' and tonumber(job.expires_at)
    and tonumber(job.expires_at) <= now)
end

if ARGV[2] == 'id' then
  local id = ARGV[3]
  local job = load(id)
  if not visible(job) or unreadable(job) then
    return 0
  end
  if (job.state == 'running' and tonumber(job.locked_until) and tonumber(job.locked_until) > now)
    or still_stopping(job, now) then
    return -1
  end
  if job.state == 'failed' then
    if unique_taken(id, job) then
      return -2
    end
    put_back(id, job, now)
  else
    unindex(id, job)
    job.run_at = math.min(tonumber(job.run_at), now)
    job.state = 'pending'
    put(id, { run_at = job.run_at, state = 'pending' })
    index(id, job)
  end
  wake()
  return 1
end

local name, limit = ARGV[3], tonumber(ARGV[4])
local from = '-inf'
if ARGV[5] ~= '' then
  from = '(' .. ARGV[5]
end
local failed = call('ZRANGEBYSCORE', key('failedby', name), from, '+inf', 'LIMIT', 0, limit)
local retried = 0
for _, id in ipairs(failed) do
  local job = load(id)
  if not job or job.state ~= 'failed' then
    call('ZREM', key('failedby', name), id)
  elseif visible(job) and not unreadable(job) and not unique_taken(id, job)
    and not still_stopping(job, now) then
    put_back(id, job, now)
    retried = retried + 1
  end
end
if retried > 0 then
  wake()
end
return { #failed, retried, failed[#failed] or '' }
