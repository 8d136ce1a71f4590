-- Removes up to `limit` failed jobs and `limit` execution records whose retention has ended.
-- ARGV: prefix, limit. Returns the two counts.
local now = now_ms()
local limit = tonumber(ARGV[2])
local failed = call('ZRANGEBYSCORE', key('failed'), '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(failed) do
  local job = load(id)
  if job then
    delete_job(id, job)
  else
    call('ZREM', key('failed'), id)
  end
end
return { #failed, prune_executions(now, limit) }
