-- Moves a live lease's end to now + the given time. ARGV: prefix, id, token, lease time (ms).
-- Returns the new end (ms), -1 when the token is not current, or -2 when the record cannot be
-- read (nothing changed).
local now = now_ms()
local id, token = ARGV[2], ARGV[3]
local job = load(id)
if not job or job.token ~= token or (job.state ~= 'running' and job.state ~= 'pending') then
  return -1
end
if unreadable(job) then
  return -2
end
unindex(id, job)
job.state = 'running'
job.demoted = '0'
job.locked_until = now + tonumber(ARGV[4])
put(id, { state = 'running', demoted = '0', locked_until = job.locked_until })
index(id, job)
return job.locked_until
