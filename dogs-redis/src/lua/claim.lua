-- Leases up to `limit` due jobs of the given names. ARGV: prefix, limit, worker id, token base,
-- then triples of job name, lease time (ms) and the most jobs of that name this claim takes.
-- A paused name is left out; a name with a concurrency limit takes at most the limit less its
-- live leases (scripts run one at a time, so racing claimers never exceed it together).
-- First makes those names' due scheduled jobs pending and reclaims their leases that ran out
-- (demoted: their execution went stale). Reads only what is due: far-future and failed jobs
-- cost nothing.
-- Returns: now, the number of commands run, when the next job of those names is due (ms; now
-- when due jobs are left, -1 when there is none), then one JSON object per leased job, in claim
-- order.
local now = now_ms()

-- What processes of the earlier key layout wrote (during an upgrade), a bounded step a claim.
if call('EXISTS', key('scheduled'), key('leases')) > 0 then
  drain_legacy(100)
end

for i = 5, #ARGV, 3 do
  local name = ARGV[i]
  local due = call('ZRANGEBYSCORE', key('scheduled', name), '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    call('ZREM', key('scheduled', name), id)
    local job = load(id)
    if job then
      job.name = name
      job.state = 'pending'
      put(id, { state = 'pending' })
      index(id, job)
    end
  end
  local expired = call('ZRANGEBYSCORE', key('leases', name), '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(expired) do
    call('ZREM', key('leases', name), id)
    local job = load(id)
    -- Only a running job's lease: a job cancelled while it ran stays failed.
    if job and job.state == 'running' then
      job.name = name
      job.state = 'pending'
      job.demoted = '1'
      put(id, { state = 'pending', demoted = '1' })
      index(id, job)
    end
  end
end

local limit = tonumber(ARGV[2])
local has_settings = call('EXISTS', key('paused'), key('limits')) > 0
local paused = {}
local candidates = {}
for i = 5, #ARGV, 3 do
  local name, lock_ms = ARGV[i], tonumber(ARGV[i + 1])
  local cap = math.min(limit, tonumber(ARGV[i + 2]))
  if has_settings then
    if call('SISMEMBER', key('paused'), name) == 1 then
      paused[name] = true
      cap = 0
    else
      local most = tonumber(call('HGET', key('limits'), name))
      -- A limit written by hand that is not positive is no limit, as reads show it.
      if most and most > 0 then
        local live = call('ZCOUNT', key('leases', name), '(' .. now, '+inf')
        cap = math.min(cap, math.max(0, most - live))
      end
    end
  end
  if cap > 0 then
    for _, member in ipairs(call('ZRANGE', key('ready', name), 0, cap - 1)) do
      candidates[#candidates + 1] = { member, name, lock_ms }
    end
  end
end
table.sort(candidates, function(a, b) return a[1] < b[1] end)

-- How long a record that cannot be read stays visible as failed (7 days).
local UNREADABLE_RETENTION_MS = 7 * 24 * 3600 * 1000

local out = { now, 0, now }
for i = 1, math.min(limit, #candidates) do
  local member, name, lock_ms = candidates[i][1], candidates[i][2], candidates[i][3]
  local id = text(tonumber(string.sub(member, -20)) or 0)
  later(later_zrem, key('ready', name), member)
  local job = load(id)
  local problem = unreadable(job)
  if problem then
    -- Written by hand or by another version: failed for good, with the reason, and reported.
    if job then
      job.state = 'failed'
      put(id, { state = 'failed', last_error = 'unreadable record: ' .. problem,
        expires_at = now + UNREADABLE_RETENTION_MS })
      call('ZADD', key('failed'), now + UNREADABLE_RETENTION_MS, id)
      if type(job.name) == 'string' then
        call('ZADD', key('failedby', job.name), id, id)
        free_unique(id, job)
      end
    end
    out[#out + 1] = cjson.encode({ unreadable = id, error = problem })
  else
    local was_stale = (job.token ~= nil) or (job.demoted == '1')
    local token = ARGV[4] .. ':' .. id
    local tries = tonumber(job.tries) + 1
    local locked_until = now + lock_ms
    put(id, {
      state = 'running', tries = tries, demoted = '0', token = token,
      locked_until = locked_until, locked_by = ARGV[3],
    })
    later(later_zadd, key('leases', name), locked_until, id)
    out[#out + 1] = cjson.encode({
      id = id, name = job.name, kind = job.kind, params = job.params,
      priority = job.priority, run_at = text(job.run_at), uid = job.uid,
      tries = text(tries), token = token, locked_until = text(locked_until),
      locked_by = ARGV[3], schedule_key = job.schedule_key, created_at = job.created_at,
      was_stale = was_stale, trace = job.trace,
    })
  end
end
-- One command per name for the ready sets and one for the leases, whatever the batch size.
flush_later()
if #out - 3 < limit then
  -- Fewer than asked: when is the next job of these names due?
  local next_due = -1
  for i = 5, #ARGV, 3 do
    local name = ARGV[i]
    if paused[name] then
      -- Left out: resuming it wakes the workers.
    elseif call('ZCARD', key('ready', name)) > 0 then
      next_due = now
      break
    else
      for _, set in ipairs({ 'scheduled', 'leases' }) do
        local first = call('ZRANGE', key(set, name), 0, 0, 'WITHSCORES')
        if first[2] then
          local at = tonumber(first[2])
          if next_due < 0 or at < next_due then
            next_due = at
          end
        end
      end
    end
  end
  out[3] = next_due
end
out[2] = calls
return out
