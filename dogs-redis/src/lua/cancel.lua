-- Cancels a job. ARGV: prefix, error, retention (ms), then 'id' and the id, or 'unique', the
-- name and the unique identifier. A job that is not running is removed; a running one is failed
-- with the error, its lease ended, and its workers told.
-- The cancelled job keeps its lease end, and its entry in its name's lease set, until then: its
-- handler may still be stopping, so it counts against the name's limit and is not retried.
-- Returns 1 when removed, 2 when a running job was cancelled, 0 when there is no such job, -1
-- when it is a running recurrent job (left as it is).
local now = now_ms()
local id = ARGV[5]
if ARGV[4] == 'unique' then
  id = call('HGET', key('unique'), unique_field(ARGV[5], ARGV[6]))
  if not id then
    return 0
  end
end
local job = load(id)
if not job or not job.name then
  return 0
end
if job.state == 'failed' and tonumber(job.expires_at) and tonumber(job.expires_at) <= now then
  return 0
end
if still_stopping(job, now) then
  -- Cancelled already, its handler maybe still stopping: it keeps its place.
  return 1
end
if job.state == 'running' and tonumber(job.locked_until) and tonumber(job.locked_until) > now then
  if job.kind ~= 'event' then
    return -1
  end
  unindex(id, job)
  call('HDEL', key('job', id), 'token')
  job.token = nil
  job.state = 'failed'
  job.demoted = '0'
  job.last_error = ARGV[2]
  job.expires_at = now + tonumber(ARGV[3])
  put(id, { state = 'failed', demoted = '0', last_error = job.last_error, expires_at = job.expires_at })
  index(id, job)
  call('ZADD', key('leases', job.name), job.locked_until, id)
  free_unique(id, job)
  tell_cancelled()
  return 2
end
delete_job(id, job)
return 1
