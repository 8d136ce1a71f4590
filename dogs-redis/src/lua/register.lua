-- Creates or updates the one record of a recurrent job. ARGV: prefix, name, priority, schedule
-- key, next run (ms, used when the schedule key changed). Returns the record's id.
local now = now_ms()
local name, priority, schedule_key, next_run = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local id = call('HGET', key('recurrent'), name)
local job = id and load(id)
if job then
  unindex(id, job)
  job.priority = priority
  if job.schedule_key ~= schedule_key then
    job.schedule_key = schedule_key
    job.run_at = next_run
    if job.state == 'scheduled' or job.state == 'pending' then
      job.state = pending_or_scheduled(next_run, now)
    end
  end
  put(id, { priority = job.priority, schedule_key = job.schedule_key, run_at = job.run_at, state = job.state })
  if index(id, job) then
    wake()
  end
  return tonumber(id)
end
id = tostring(call('INCR', key('seq')))
job = {
  name = name, kind = 'recurrent', params = 'null', priority = priority, run_at = now, tries = 0,
  state = 'pending', demoted = '0', schedule_key = schedule_key, created_at = now,
}
put(id, job)
call('HSET', key('recurrent'), name, id)
call('ZADD', key('jobs'), id, id)
call('ZADD', key('byname', name), id, id)
call('SADD', key('names'), name)
index(id, job)
wake()
return tonumber(id)
