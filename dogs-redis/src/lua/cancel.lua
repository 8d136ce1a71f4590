-- Removes a job that is not running. ARGV: prefix, 'id' and the id, or 'unique', the name and
-- the unique identifier. Returns 1 when removed, 0 when there is no such job, -1 when it runs.
local now = now_ms()
local id = ARGV[3]
if ARGV[2] == 'unique' then
  id = call('HGET', key('unique'), unique_field(ARGV[3], ARGV[4]))
  if not id then
    return 0
  end
end
local job = load(id)
if not job then
  return 0
end
if job.state == 'running' and tonumber(job.locked_until) > now then
  return -1
end
delete_job(id, job)
return 1
