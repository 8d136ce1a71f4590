-- Pauses, resumes or limits a job name. ARGV: prefix, name, then 'pause', 'resume', or 'limit'
-- and the limit ('' for none). Resuming, or a new limit, wakes idle workers.
local name = ARGV[2]
if ARGV[3] == 'pause' then
  call('SADD', key('paused'), name)
elseif ARGV[3] == 'resume' then
  call('SREM', key('paused'), name)
  wake()
elseif ARGV[4] == '' then
  call('HDEL', key('limits'), name)
  wake()
else
  call('HSET', key('limits'), name, ARGV[4])
  wake()
end
return 1
