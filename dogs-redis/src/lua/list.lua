-- Finds one page of jobs in listing order: scheduling order, or newest first for failed jobs.
-- ARGV: prefix, name ('' for every name), state ('' for any, 'pending', 'running', 'failed'),
-- offset, limit. Returns the server's time (ms), then the page's ids.
-- Running jobs come from the names' leases (as many as ran lately); failed jobs from the
-- names' failed sets; every other page walks the name's (or every) job ids in order, reading
-- three fields of each, and so costs the offset plus the page plus the jobs of other states
-- among them, never the jobs after the page.
local now = now_ms()
local name, state = ARGV[2], ARGV[3]
local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = { now }
if limit <= 0 then
  return out
end

local function state_of(id)
  local f = call('HMGET', key('job', id), 'state', 'locked_until', 'expires_at')
  if not f[1] then
    return nil
  end
  if f[1] == 'failed' then
    -- As decode.rs reads it: without an end of retention, a failed job stays visible.
    local expires = tonumber(f[3])
    if expires and expires <= now then
      return nil
    end
    return 'failed'
  end
  if f[1] == 'running' and (tonumber(f[2]) or 0) > now then
    return 'running'
  end
  return 'pending'
end

local function by_id(a, b)
  return tonumber(a) < tonumber(b)
end
local names = { name }
if name == '' then
  names = call('SMEMBERS', key('names'))
end

-- Running jobs: the live leases of the names (a cancelled job keeps its entry, failed).
if state == 'running' then
  local ids = {}
  for _, n in ipairs(names) do
    for _, id in ipairs(call('ZRANGEBYSCORE', key('leases', n), '(' .. now, '+inf')) do
      if call('HGET', key('job', id), 'state') == 'running' then
        ids[#ids + 1] = id
      end
    end
  end
  table.sort(ids, by_id)
  for i = offset + 1, math.min(#ids, offset + limit) do
    out[#out + 1] = ids[i]
  end
  return out
end

-- Failed jobs of every name: the newest offset + limit of each name's failed set, merged.
if state == 'failed' and name == '' then
  local ids = {}
  for _, n in ipairs(names) do
    local rank, kept = 0, 0
    while kept < offset + limit do
      local chunk = call('ZRANGE', key('failedby', n), rank, rank + 499, 'REV')
      if #chunk == 0 then
        break
      end
      rank = rank + #chunk
      for _, id in ipairs(chunk) do
        if kept < offset + limit and state_of(id) == 'failed' then
          ids[#ids + 1] = id
          kept = kept + 1
        end
      end
    end
  end
  table.sort(ids, function(a, b) return tonumber(a) > tonumber(b) end)
  for i = offset + 1, math.min(#ids, offset + limit) do
    out[#out + 1] = ids[i]
  end
  return out
end

local index, reverse = key('jobs'), false
if name ~= '' then
  index = key('byname', name)
end
if state == 'failed' then
  reverse = true
  if name ~= '' then
    index = key('failedby', name)
  end
end
local skipped, rank, CHUNK = 0, 0, 500
while true do
  local ids
  if reverse then
    ids = call('ZRANGE', index, rank, rank + CHUNK - 1, 'REV')
  else
    ids = call('ZRANGE', index, rank, rank + CHUNK - 1)
  end
  if #ids == 0 then
    return out
  end
  rank = rank + #ids
  for _, id in ipairs(ids) do
    local s = state_of(id)
    if s and (state == '' or s == state) then
      if skipped < offset then
        skipped = skipped + 1
      else
        out[#out + 1] = id
        if #out - 1 >= limit then
          return out
        end
      end
    end
  end
end
