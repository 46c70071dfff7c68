import EPPRedis

/// Lua scripts of the Redis prefix index (layout: `RedisPrefixIndex.swift`): the writes, which must
/// read-modify-write atomically. Each runs as one `EVALSHA` (one round trip). Lookups are a plain `MGET`. Pod ids and block hashes are 8 raw bytes; a block value is the concatenation
/// of the ids of the pods holding it, so membership is a plain `string.find` at an 8-byte-aligned offset.
enum RedisPrefixScripts {
    /// Shared helpers. `drop_all` cuts `id` out of the values of the blocks `members` (hashes; keys are
    /// `bprefix .. hash`), deleting keys no pod holds any more, with one MGET and at most one DEL and one MSET
    /// per 1000 blocks. Every aligned copy goes (a duplicate can only follow a partial loss of keys).
    /// Replies never carry ZSET scores: Redis 7.0 formats each double with snprintf (~1 µs apiece).
    private static let helpers = """
    local function holds(v, id)
      local s = 1
      while true do
        local i = string.find(v, id, s, true)
        if not i then return false end
        if i % 8 == 1 then return true end
        s = i + 1
      end
    end
    local function drop_all(bprefix, members, id)
      for from = 1, #members, 1000 do
        local to = math.min(from + 999, #members)
        local keys = {}
        for i = from, to do keys[i - from + 1] = bprefix .. members[i] end
        local vals = redis.call('MGET', unpack(keys))
        local set, ns, del, nd = {}, 0, {}, 0
        for i = 1, #keys do
          local v = vals[i]
          if v then
            local out, k = {}, 0
            for j = 1, #v, 8 do
              local x = string.sub(v, j, j + 7)
              if x ~= id then k = k + 1; out[k] = x end
            end
            if k == 0 then nd = nd + 1; del[nd] = keys[i]
            elseif k * 8 ~= #v then ns = ns + 2; set[ns - 1] = keys[i]; set[ns] = table.concat(out) end
          end
        end
        if nd > 0 then redis.call('DEL', unpack(del, 1, nd)) end
        if ns > 0 then redis.call('MSET', unpack(set, 1, ns)) end
      end
    end

    """

    /// KEYS = n block keys (chain order), then p recency ZSETs (one per pod), then the namespace's pod registry
    /// HASH. ARGV = n, p, then per pod: id, capacity, name, known (this request's Redis lookup found the pod
    /// holding blocks 1…known; 0 when unknown). Per pod, one ZADD refreshes the recency of all n blocks and
    /// counts the new ones; only those get the id appended (one MGET + one MSET). When the count is exactly
    /// n − known, blocks known+1…n are the new ones; otherwise their values are checked. Scores are Redis' own
    /// clock (ms × 1024) minus the block's position, so eviction beyond capacity takes the least recently used
    /// requests first and, within one, the deepest blocks first (prefixes stay intact).
    /// Returns {block entries written, entries evicted}.
    static let record = RedisScript(helpers + """
    local n, p = tonumber(ARGV[1]), tonumber(ARGV[2])
    local t = redis.call('TIME')
    local base = (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) * 1024
    local bprefix = string.sub(KEYS[1], 1, -9)
    local z = {}
    for i = 1, n do
      local r = i - 1
      if r > 1023 then r = 1023 end
      z[2 * i - 1] = base + 1023 - r
      z[2 * i] = string.sub(KEYS[i], -8)
    end
    local written, evicted = 0, 0
    for q = 1, p do
      local o = 4 * q - 1
      local id, cap, name, known = ARGV[o], tonumber(ARGV[o + 1]), ARGV[o + 2], tonumber(ARGV[o + 3])
      if known > n then known = n end
      local lru = KEYS[n + q]
      local added = redis.call('ZADD', lru, unpack(z))
      if added > 0 then
        local vals = redis.call('MGET', unpack(KEYS, known + 1, n))
        local all = added == n - known
        local set, ns = {}, 0
        for i = known + 1, n do
          local v = vals[i - known]
          if all or not v or not holds(v, id) then
            ns = ns + 2; set[ns - 1] = KEYS[i]; set[ns] = (v or '') .. id
          end
        end
        if ns > 0 then redis.call('MSET', unpack(set, 1, ns)) end
        written = written + ns / 2
        redis.call('HSET', KEYS[n + p + 1], id, name)
      end
      local over = redis.call('ZCARD', lru) - cap
      if over > 0 then
        local old = redis.call('ZRANGE', lru, 0, over - 1)
        redis.call('ZREMRANGEBYRANK', lru, 0, over - 1)
        drop_all(bprefix, old, id)
        evicted = evicted + #old
      end
    end
    return {written, evicted}
    """)

    /// KEYS[1] = a namespace's pod registry HASH; ARGV[1] = the namespace; ARGV[2…] = ids of pods to keep.
    /// Every other registered pod loses all its block entries, its recency ZSET and its registry entry.
    /// Returns {pods removed, entries removed}. O(entries of the removed pods).
    static let prune = RedisScript(helpers + """
    local keep = {}
    for i = 2, #ARGV do keep[ARGV[i]] = true end
    local ns = ARGV[1]
    local pods, entries = 0, 0
    for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
      if not keep[id] then
        local lru = ns .. ':p:' .. id
        local members = redis.call('ZRANGE', lru, 0, -1)
        drop_all(ns .. ':b:', members, id)
        entries = entries + #members
        redis.call('DEL', lru)
        redis.call('HDEL', KEYS[1], id)
        pods = pods + 1
      end
    end
    return {pods, entries}
    """)

    static let all = [record, prune]
}
