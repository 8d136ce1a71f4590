-- Moves an older key layout to the current one (idempotent). ARGV: prefix. Returns the number of
-- index entries moved.
-- Layout 1 kept one 'scheduled' and one 'leases' set for every name; layout 2 keeps one of each
-- per name, so a claim promotes and reclaims only its own names and finds its next due job in
-- one read per name.
local moved = 0
if call('GET', key('layout')) ~= '2' then
  for _, set in ipairs({ 'scheduled', 'leases' }) do
    local old = key(set)
    if call('TYPE', old).ok == 'zset' then
      local members = call('ZRANGE', old, 0, -1, 'WITHSCORES')
      for i = 1, #members, 2 do
        local id, score = members[i], members[i + 1]
        local name = call('HGET', key('job', id), 'name')
        if name then
          call('ZADD', key(set, name), score, id)
          moved = moved + 1
        end
      end
      call('DEL', old)
    end
  end
  call('SET', key('layout'), '2')
end
return moved
