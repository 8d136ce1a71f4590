-- Finds one page of jobs in listing order: scheduling order, or newest first for failed jobs.
-- ARGV: prefix, name ('' for every name), state ('' for any, 'pending', 'running', 'failed'),
-- offset, limit. Returns the server's time (ms), then the page's ids.
-- Running jobs come from the name's leases (as many as run at once); failed jobs of a name
-- from its failed set; every other page walks the name's (or every) job ids in order, reading
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
    if (tonumber(f[3]) or 0) <= now then
      return nil
    end
    return 'failed'
  end
  if f[1] == 'running' and (tonumber(f[2]) or 0) > now then
    return 'running'
  end
  return 'pending'
end

if state == 'running' and name ~= '' then
  local ids = call('ZRANGEBYSCORE', key('leases', name), '(' .. now, '+inf')
  table.sort(ids, function(a, b) return tonumber(a) < tonumber(b) end)
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
