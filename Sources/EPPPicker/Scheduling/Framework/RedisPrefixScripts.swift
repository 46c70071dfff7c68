import EPPRedis

/// Lua scripts of the Redis prefix index (layout: `RedisPrefixIndex.swift`). Each runs as one `EVALSHA`
/// (one round trip, atomic). Pod ids and block hashes are 8 raw bytes; a block value is the concatenation
/// of the ids of the pods holding it, so membership is a plain `string.find` at an 8-byte-aligned offset.
enum RedisPrefixScripts {
    /// Shared helpers. `drop` cuts every aligned copy of `id` out of a block value (deletes the key when no
    /// pod is left); duplicates can only appear after a partial loss of keys, and are removed all at once.
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
    local function drop(key, id)
      local v = redis.call('GET', key)
      if not v then return end
      local out, k = {}, 0
      for i = 1, #v, 8 do
        local x = string.sub(v, i, i + 7)
        if x ~= id then k = k + 1; out[k] = x end
      end
      if k == 0 then redis.call('DEL', key) elseif k * 8 ~= #v then redis.call('SET', key, table.concat(out)) end
    end

    """

    /// KEYS = block keys in chain order; ARGV = candidate pod ids. Returns one integer per candidate: the
    /// number of blocks, from the first, it holds without a gap. The walk stops as soon as no candidate is
    /// still in its run, and reads block values in growing MGET chunks (8, 32, 128, …) so a cold prefix
    /// costs one short MGET. Runs of blocks with the identical holder string cost O(1) each.
    static let lookup = RedisScript(helpers + """
    local m = #ARGV
    local counts, alive = {}, {}
    for i = 1, m do counts[i] = 0; alive[i] = i end
    local nalive, n = m, #KEYS
    local pos, chunk = 1, 8
    local prev, same, stop = nil, 0, false
    while pos <= n and nalive > 0 and not stop do
      local last = pos + chunk - 1
      if last > n then last = n end
      local vals = redis.call('MGET', unpack(KEYS, pos, last))
      for j = 1, #vals do
        local v = vals[j]
        if not v then stop = true; break end
        if v == prev then
          same = same + 1
        else
          local k = 0
          for a = 1, nalive do
            local c = alive[a]
            counts[c] = counts[c] + same
            if holds(v, ARGV[c]) then k = k + 1; alive[k] = c; counts[c] = counts[c] + 1 end
          end
          nalive, same, prev = k, 0, v
          if k == 0 then stop = true; break end
        end
      end
      pos = last + 1
      chunk = chunk * 4
    end
    for a = 1, nalive do local c = alive[a]; counts[c] = counts[c] + same end
    return counts
    """)

    /// KEYS = n block keys (chain order), then p recency ZSETs (one per pod), then the namespace's pod registry
    /// HASH. ARGV = n, p, then per pod: id, capacity, name. Per pod, one ZMSCORE finds the blocks it already
    /// holds: those only get a fresher score (one ZADD for all); only new ones get the id APPENDed. Scores
    /// are Redis' own clock (ms × 1024) minus the block's position, so eviction (ZPOPMIN beyond capacity)
    /// takes the oldest requests first and, within one, the deepest blocks first (prefixes stay intact).
    /// Returns {block entries written, entries evicted}.
    static let record = RedisScript(helpers + """
    local n, p = tonumber(ARGV[1]), tonumber(ARGV[2])
    local t = redis.call('TIME')
    local base = (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) * 1024
    local members = {}
    for i = 1, n do members[i] = string.sub(KEYS[i], -8) end
    local bprefix = string.sub(KEYS[1], 1, -9)
    local written, evicted = 0, 0
    for q = 1, p do
      local id, cap, name = ARGV[3 * q], tonumber(ARGV[3 * q + 1]), ARGV[3 * q + 2]
      local lru = KEYS[n + q]
      local held = redis.call('ZMSCORE', lru, unpack(members))
      local z, w = {}, 0
      for i = 1, n do
        local r = i - 1
        if r > 1023 then r = 1023 end
        z[2 * i - 1] = base + 1023 - r
        z[2 * i] = members[i]
        if not held[i] then redis.call('APPEND', KEYS[i], id); w = w + 1 end
      end
      redis.call('ZADD', lru, unpack(z))
      local over = redis.call('ZCARD', lru) - cap
      if over > 0 then
        local old = redis.call('ZPOPMIN', lru, over)
        for i = 1, #old, 2 do drop(bprefix .. old[i], id); evicted = evicted + 1 end
      end
      if w > 0 then redis.call('HSET', KEYS[n + p + 1], id, name) end
      written = written + w
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
        for _, m in ipairs(redis.call('ZRANGE', lru, 0, -1)) do drop(ns .. ':b:' .. m, id); entries = entries + 1 end
        redis.call('DEL', lru)
        redis.call('HDEL', KEYS[1], id)
        pods = pods + 1
      end
    end
    return {pods, entries}
    """)

    static let all = [lookup, record, prune]
}
