-- Counts jobs per name and state from the per-name indexes, with the server's clock: a few
-- O(log n) reads per name, whatever the number of jobs. ARGV: prefix.
-- Returns the server's time (ms), then per name that has jobs: name, pending, scheduled (of
-- pending, run time still ahead), running, failed. Names left with no job leave the set of
-- names.
local now = now_ms()
-- Failed jobs past their retention and not yet pruned are not counted; pruning keeps them few.
local expired = {}
local gone = call('ZRANGEBYSCORE', key('failed'), '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(gone) do
  local name = call('HGET', key('job', id), 'name')
  if name then
    expired[name] = (expired[name] or 0) + 1
  end
end
local out = { now }
local names = call('SMEMBERS', key('names'))
for _, name in ipairs(names) do
  if call('ZCARD', key('byname', name)) == 0 then
    call('SREM', key('names'), name)
  else
    local scheduled = call('ZCARD', key('scheduled', name))
    local ahead = call('ZCOUNT', key('scheduled', name), '(' .. now, '+inf')
    -- Leases are as many as the jobs that ran lately (not the backlog); a cancelled job keeps
    -- its entry, failed, until a claim drops it, and counts only as failed.
    local running, lapsed = 0, 0
    local leases = call('ZRANGE', key('leases', name), 0, -1, 'WITHSCORES')
    for i = 1, #leases, 2 do
      if call('HGET', key('job', leases[i]), 'state') == 'running' then
        if tonumber(leases[i + 1]) > now then
          running = running + 1
        else
          lapsed = lapsed + 1
        end
      end
    end
    local ready = call('ZCARD', key('ready', name))
    local failed = call('ZCARD', key('failedby', name)) - (expired[name] or 0)
    local pending = ready + scheduled + lapsed
    if pending + running + math.max(failed, 0) > 0 then
      out[#out + 1] = name
      out[#out + 1] = pending
      out[#out + 1] = ahead
      out[#out + 1] = running
      out[#out + 1] = math.max(failed, 0)
    end
  end
end
return out
