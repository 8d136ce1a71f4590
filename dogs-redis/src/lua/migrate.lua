-- Moves keys of an earlier layout to the current one, in bounded steps (idempotent). ARGV:
-- prefix. Returns how many index entries this step moved; the caller runs it again until 0.
-- Layout 1 kept one 'scheduled' and one 'leases' set for every name; layout 2 keeps one of each
-- per name, so a claim promotes and reclaims only its own names and finds its next due job in
-- one read per name. Claims also drain what processes of the earlier layout still write.
-- Layout 3 adds a set of failed jobs per name, filled here from the set of every failed job.
local moved = drain_legacy(1000)
if moved > 0 then
  return moved
end
local layout = tonumber(call('GET', key('layout'))) or 1
if layout < 3 then
  local from = tonumber(call('GET', key('layout3_from'))) or 0
  local failed = call('ZRANGE', key('failed'), from, from + 999, 'WITHSCORES')
  for i = 1, #failed, 2 do
    local id, score = failed[i], failed[i + 1]
    local name = call('HGET', key('job', id), 'name')
    if name then
      call('ZADD', key('failedby', name), score, id)
    end
  end
  if #failed > 0 then
    call('SET', key('layout3_from'), from + #failed / 2)
    return #failed / 2
  end
  call('DEL', key('layout3_from'))
end
call('SET', key('layout'), '3')
return 0
