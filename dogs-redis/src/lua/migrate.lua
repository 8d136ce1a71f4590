-- Moves keys of an earlier layout to the current one, in bounded steps (idempotent). ARGV:
-- prefix. Returns how many index entries this step moved; the caller runs it again until 0.
-- Layout 1 kept one 'scheduled' and one 'leases' set for every name; layout 2 keeps one of each
-- per name, so a claim promotes and reclaims only its own names and finds its next due job in
-- one read per name. Claims also drain what processes of the earlier layout still write.
local moved = drain_legacy(1000)
if moved == 0 then
  call('SET', key('layout'), '2')
end
return moved
