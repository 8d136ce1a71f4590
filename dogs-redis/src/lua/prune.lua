-- Removes up to `limit` failed jobs and `limit` execution records whose retention had ended at
-- `cutoff` (ms; the server's clock if absent).
-- ARGV: prefix, limit, cutoff. Returns the two counts.
local now = tonumber(ARGV[3]) or now_ms()
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
