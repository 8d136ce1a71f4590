-- Moves keys of an earlier layout to the current one, in bounded steps (idempotent). ARGV:
-- prefix. Returns how many index entries this step moved; the caller runs it again until 0.
-- Layout 1 kept one 'scheduled' and one 'leases' set for every name; layout 2 keeps one of each
-- per name, so a claim promotes and reclaims only its own names and finds its next due job in
-- one read per name. Claims also drain what processes of the earlier layout still write.
-- Layout 3 adds a set of failed jobs per name, filled here from every job, in id order.
-- Layout 4 adds the set of job names, filled here from every job, in id order.
local moved = drain_legacy(1000)
if moved > 0 then
  return moved
end
-- Visits the next 1000 jobs after the cursor in cursor_key, in id order, and moves the cursor
-- past them; at the end of the jobs it deletes the cursor. Returns how many jobs it visited.
local function pass(cursor_key, visit)
  local from = call('GET', key(cursor_key))
  local start = '-inf'
  if from then
    start = '(' .. from
  end
  local ids = call('ZRANGEBYSCORE', key('jobs'), start, '+inf', 'LIMIT', 0, 1000)
  for _, id in ipairs(ids) do
    visit(id)
  end
  if #ids > 0 then
    call('SET', key(cursor_key), ids[#ids])
  else
    call('DEL', key(cursor_key))
  end
  return #ids
end
local layout = tonumber(call('GET', key('layout'))) or 1
if layout < 3 then
  local count = pass('layout3_from', function(id)
    local fields = call('HMGET', key('job', id), 'name', 'state')
    if fields[1] and fields[2] == 'failed' then
      call('ZADD', key('failedby', fields[1]), id, id)
    end
  end)
  if count > 0 then
    return count
  end
  call('SET', key('layout'), '3')
end
if layout < 4 then
  local count = pass('layout4_from', function(id)
    local name = call('HGET', key('job', id), 'name')
    if name then
      call('SADD', key('names'), name)
    end
  end)
  if count > 0 then
    return count
  end
end
if layout < 4 then
  call('SET', key('layout'), '4')
end
return 0
