-- Stores a running job's progress, fenced by its lease token. ARGV: prefix, id, token, JSON.
-- Returns 1, or 0 when the token is not current (nothing changed).
local id, token = ARGV[2], ARGV[3]
local job = load(id)
if not job or job.token ~= token or job.state ~= 'running' then
  return 0
end
call('HSET', key('job', id), 'progress', ARGV[4])
return 1
