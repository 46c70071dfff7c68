import EPPRedis

/// Lua scripts of the Redis prefix index (layout: `RedisPrefixIndex.swift`): the writes that must
/// read-modify-write atomically. Each runs as one `EVALSHA` (one round trip). Lookups are a plain `MGET`, and a
/// record that only refreshes recency is a plain `ZADD XX`. Pod, segment and block ids are 8 raw bytes; a block
/// value is a list of 16-byte entries `pod id ‖ segment id`, so membership is a plain `string.find` at a
/// 16-byte-aligned offset.
enum RedisPrefixScripts {
    /// Shared helpers.
    /// `entry(v, id)`: offset of `id`'s entry in the block value `v`, or nil.
    /// `drop(ns, blocks, id)`: cuts `id`'s entries out of the values of `blocks` (concatenated 8-byte hashes),
    /// deleting keys nobody holds any more: one MGET and at most one DEL and one MSET per 1000 blocks.
    /// `drop_listed(ns, id, skeys, lists, n)`: removes the first `n` segments of pod `id` given their keys and
    /// block lists (an MGET of those keys); returns the number of block entries removed.
    /// `drop_segments(ns, id, segs)`: the same for segment ids, reading their lists 1000 at a time.
    /// `evict_to(ns, id, lru, count, target)`: removes the pod's least recent segments (never its last) until it
    /// holds at most `target` of its `count` blocks; updates `ns:n`; returns the entries removed. Segments go in
    /// batches: one ZRANGE sized from the pod's mean segment, one MGET of their lists, one ZREMRANGEBYRANK of
    /// those that cover the excess, then one MGET/DEL/MSET for all their blocks — a handful of calls per
    /// eviction instead of six per segment (each call inside a script costs Redis 1–2 µs here). Only the record
    /// script (after a fallback) evicts this way; a direct record's eviction is plain commands
    /// (`RedisPrefixEviction.swift`).
    /// Replies never carry ZSET scores: Redis 7.0 formats each double with snprintf (~1 µs apiece).
    private static let helpers = """
    local function entry(v, id)
      local s = 1
      while true do
        local i = string.find(v, id, s, true)
        if not i then return nil end
        if i % 16 == 1 then return i end
        s = i + 1
      end
    end
    local function drop(ns, blocks, id)
      local keys = {}
      for i = 1, #blocks / 8 do keys[i] = ns .. ':b:' .. string.sub(blocks, 8 * i - 7, 8 * i) end
      for from = 1, #keys, 1000 do
        local to = math.min(from + 999, #keys)
        local vals = redis.call('MGET', unpack(keys, from, to))
        local set, ns2, del, nd = {}, 0, {}, 0
        for i = 1, to - from + 1 do
          local v = vals[i]
          if v and #v % 16 == 0 then
            local out, k = {}, 0
            for j = 1, #v, 16 do
              if string.sub(v, j, j + 7) ~= id then k = k + 1; out[k] = string.sub(v, j, j + 15) end
            end
            if k == 0 then nd = nd + 1; del[nd] = keys[from + i - 1]
            elseif k * 16 ~= #v then ns2 = ns2 + 2; set[ns2 - 1] = keys[from + i - 1]; set[ns2] = table.concat(out) end
          end
        end
        if nd > 0 then redis.call('DEL', unpack(del, 1, nd)) end
        if ns2 > 0 then redis.call('MSET', unpack(set, 1, ns2)) end
      end
    end
    local function drop_listed(ns, id, skeys, lists, n)
      local blocks, nb, removed = {}, 0, 0
      for i = 1, n do
        local b = lists[i]
        if b then nb = nb + 1; blocks[nb] = b; removed = removed + #b / 8 end
      end
      if n > 0 then redis.call('DEL', unpack(skeys, 1, n)) end
      if nb > 0 then drop(ns, table.concat(blocks), id) end
      return removed
    end
    local function drop_segments(ns, id, segs)
      local removed = 0
      for from = 1, #segs, 1000 do
        local skeys = {}
        for i = from, math.min(from + 999, #segs) do skeys[i - from + 1] = ns .. ':s:' .. id .. segs[i] end
        removed = removed + drop_listed(ns, id, skeys, redis.call('MGET', unpack(skeys)), #skeys)
      end
      return removed
    end
    local function evict_to(ns, id, lru, count, target)
      local dropped = 0
      while count - dropped > target do
        local card = redis.call('ZCARD', lru)
        if card <= 1 then break end
        local excess = count - dropped - target
        local want = math.min(card - 1, 1000, math.max(1, math.ceil(excess * card / (count - dropped))))
        local segs = redis.call('ZRANGE', lru, 0, want - 1)
        local skeys = {}
        for i = 1, #segs do skeys[i] = ns .. ':s:' .. id .. segs[i] end
        local lists = redis.call('MGET', unpack(skeys))
        local take, covered = #segs, 0
        for i = 1, #segs do
          if lists[i] then covered = covered + #lists[i] / 8 end
          if covered >= excess then take = i; break end
        end
        redis.call('ZREMRANGEBYRANK', lru, 0, take - 1)
        dropped = dropped + drop_listed(ns, id, skeys, lists, take)
      end
      if dropped > 0 then redis.call('HINCRBY', ns .. ':n', id, -dropped) end
      return dropped
    end

    """

    /// Records a batch of requests (those one event loop picked within `Lane.recordBatchDelayNanos`): writes the
    /// blocks each request brings that its pods don't hold yet, as one new segment per (request, pod).
    /// KEYS = the requests' block keys, request after request: each request's chain from the first block after
    /// the run its lookup found every recorded pod holding. ARGV = r (requests), now (wall-clock ms), then per
    /// request: m (its keys), p (pods), then per pod: id, capacity, name, skip (leading keys of the request the
    /// lookup found this pod holding), t, then t segment ids to touch (the segments of the held run, chain order).
    /// One MGET reads every key once; blocks a pod turns out to hold anyway (another replica wrote them, the
    /// lookup fell back, or an earlier request of the batch) add their segment to the touch list; the others get
    /// `id ‖ segment` appended and form the new segment (id = its first block's hash; key `ns:s:<pod><segment>`
    /// = its hashes). Per (request, pod) one `ZADD XX` refreshes the touched segments and one `ZADD` adds the new
    /// one; scores are now × 1024 minus the depth in the chain, so eviction takes the least recently used
    /// requests first and, within one, the deepest segments first (prefixes stay intact). At the end one MSET
    /// writes every changed block, one HINCRBY per pod counts its blocks, and past `capacity` the pod's oldest
    /// segments are removed whole (never its last one). Returns {block entries written, entries evicted}.
    static let record = RedisScript(helpers + """
    local r = tonumber(ARGV[1])
    local base = tonumber(ARGV[2]) * 1024
    local ns = string.sub(KEYS[1], 1, -12)
    local vals = redis.call('MGET', unpack(KEYS))
    local cache = {}
    for i = 1, #KEYS do
      if cache[KEYS[i]] == nil then cache[KEYS[i]] = vals[i] or false end
    end
    local dirty, nd, isdirty = {}, 0, {}
    local grown, ng = {}, 0
    local o, k0 = 3, 0
    for _ = 1, r do
      local m, p = tonumber(ARGV[o]), tonumber(ARGV[o + 1])
      o = o + 2
      for _ = 1, p do
        local id, cap, name = ARGV[o], tonumber(ARGV[o + 1]), ARGV[o + 2]
        local skip, t = tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4])
        local touch, nt = {}, 0
        for j = 1, t do nt = nt + 1; touch[nt] = ARGV[o + 4 + j] end
        o = o + 5 + t
        local seg, blocks, nb = nil, {}, 0
        for i = k0 + skip + 1, k0 + m do
          local key = KEYS[i]
          local v = cache[key]
          local at = v and entry(v, id)
          if at then
            local s = string.sub(v, at + 8, at + 15)
            if touch[nt] ~= s then nt = nt + 1; touch[nt] = s end
          else
            local h = string.sub(key, -8)
            if not seg then seg = h end
            nb = nb + 1; blocks[nb] = h
            cache[key] = (v or '') .. id .. seg
            if not isdirty[key] then isdirty[key] = true; nd = nd + 1; dirty[nd] = key end
          end
        end
        local lru = ns .. ':p:' .. id
        if nt > 0 then
          local z, nz = {'XX'}, 1
          for j = 1, nt do z[nz + 1] = base + 1023 - math.min(j, 1022); z[nz + 2] = touch[j]; nz = nz + 2 end
          redis.call('ZADD', lru, unpack(z))
        end
        if nb > 0 then
          redis.call('SET', ns .. ':s:' .. id .. seg, table.concat(blocks))
          redis.call('ZADD', lru, base + 1023 - math.min(nt + 1, 1023), seg)
          local g = grown[id]
          if not g then ng = ng + 1; g = {id, cap, name, lru, 0}; grown[id] = g; grown[ng] = g end
          g[2] = cap
          g[5] = g[5] + nb
        end
      end
      k0 = k0 + m
    end
    if nd > 0 then
      local set = {}
      for i = 1, nd do set[2 * i - 1] = dirty[i]; set[2 * i] = cache[dirty[i]] end
      redis.call('MSET', unpack(set, 1, 2 * nd))
    end
    local written, evicted = 0, 0
    for i = 1, ng do
      local id, cap, name, lru, new = grown[i][1], grown[i][2], grown[i][3], grown[i][4], grown[i][5]
      written = written + new
      local count = redis.call('HINCRBY', ns .. ':n', id, new)
      if count == new then redis.call('HSET', ns .. ':pods', id, name) end
      evicted = evicted + evict_to(ns, id, lru, count, cap)
    end
    return {written, evicted}
    """)

    /// KEYS[1] = a namespace's pod registry HASH; ARGV[1] = the namespace; ARGV[2…] = ids of pods to keep.
    /// Every other registered pod loses all its block entries, segments, recency ZSET, count and registry
    /// entry. Returns {pods removed, entries removed}. O(entries of the removed pods).
    static let prune = RedisScript(helpers + """
    local keep = {}
    for i = 2, #ARGV do keep[ARGV[i]] = true end
    local ns = ARGV[1]
    local pods, entries = 0, 0
    for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
      if not keep[id] then
        local lru = ns .. ':p:' .. id
        entries = entries + drop_segments(ns, id, redis.call('ZRANGE', lru, 0, -1))
        redis.call('DEL', lru)
        redis.call('HDEL', KEYS[1], id)
        redis.call('HDEL', ns .. ':n', id)
        pods = pods + 1
      end
    end
    return {pods, entries}
    """)

    static let all = [record, prune]
}
