import Foundation
import Hummingbird

/// HTTP routes of one simulated vLLM server.
///
/// | Route | Behaviour |
/// |---|---|
/// | `POST /v1/completions`, `/v1/chat/completions` | simulated generation (JSON or SSE) |
/// | `POST /tokenize` | `{"count","max_model_len","tokens","token_strs"}` |
/// | `POST /v1/completions/render` | `[{"token_ids":[…]}]` (one element per prompt) |
/// | `POST /v1/chat/completions/render` | `{"token_ids":[…]}` |
/// | `GET /v1/models`, `GET /health`, `GET /metrics`, `GET /version` | as vLLM |
/// | `POST /reset_prefix_cache` | drop unpinned KV blocks (vLLM dev endpoint) |
/// | `GET /stats`, `POST /reset` | fake-backend counters since the last reset (model-server.md §8); reset also drops unpinned blocks |
/// | `GET /get_server_info`, `/get_model_info` | SGLang-style probes (for sglang-router / smg baselines) |
///
/// Not simulated: `n > 1` (one choice per prompt), `stop`, `echo`, logprobs, LoRA adapters,
/// `/v1/responses`, `/v1/embeddings`, streaming of batched prompts (400).
///
/// Every response carries `x-inference-pod`, `x-inference-port` and `x-backend-id: b<port>`
/// (the §8 fake-backend header); non-streaming generation
/// responses also carry the simulator's own view: `x-sim-ttft-ms` (simulated, scaled TTFT),
/// `x-sim-queue-ms` (time spent waiting) and `x-sim-cached-tokens`.
public enum OpenAIRoutes {
    static let podField = HTTPFields.Element.Name("x-inference-pod")!
    static let portField = HTTPFields.Element.Name("x-inference-port")!
    static let backendField = HTTPFields.Element.Name("x-backend-id")!
    static let ttftField = HTTPFields.Element.Name("x-sim-ttft-ms")!
    static let queueField = HTTPFields.Element.Name("x-sim-queue-ms")!
    static let cachedField = HTTPFields.Element.Name("x-sim-cached-tokens")!
    static let maxBody = 64 << 20

    /// Build the router of one server.
    public static func router(state: ServerState) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.middlewares.add(SimHeadersMiddleware(state: state))
        let handler = Handler(state: state)
        router.post("/v1/completions") { req, _ in try await handler.generate(req, api: .completions) }
        router.post("/v1/chat/completions") { req, _ in try await handler.generate(req, api: .chat) }
        router.post("/tokenize") { req, _ in try await handler.tokenize(req) }
        router.post("/v1/completions/render") { req, _ in try await handler.renderCompletions(req) }
        router.post("/v1/chat/completions/render") { req, _ in try await handler.renderChat(req) }
        router.get("/v1/models") { _, _ in handler.models() }
        router.get("/health") { _, _ in Response(status: .ok) }
        router.get("/version") { _, _ in jsonResponse(["version": "0.0.0-epp-sim"]) }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: SimMetrics.render(state))))
        }
        router.post("/reset_prefix_cache") { _, _ in
            state.resetPrefixCache()
            return Response(status: .ok)
        }
        // Fake-backend extras (model-server.md §8) and SGLang-style probes used by sglang-router.
        router.get("/stats") { _, _ in jsonResponse(state.stats()) }
        router.post("/reset") { _, _ in
            state.resetStats()
            return jsonResponse(["status": "ok"])
        }
        router.get("/get_model_info") { _, _ in
            jsonResponse(["model_path": .string(state.config.model), "tokenizer_path": .string(state.config.model), "is_generation": true])
        }
        router.get("/get_server_info") { _, _ in
            jsonResponse([
                "model_path": .string(state.config.model), "served_model_name": .string(state.config.model),
                "max_running_requests": .int(state.config.maxNumSeqs), "page_size": .int(state.config.blockSize),
                "max_total_num_tokens": .int(state.config.kvBlocks * state.config.blockSize),
                "context_length": .int(state.config.maxModelLen), "version": "0.0.0-epp-sim",
            ])
        }
        return router
    }

    static func jsonResponse(_ json: JSON, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(string: json.serialized())))
    }

    /// vLLM error body: `{"error":{"message","type","param","code"}}`.
    public static func errorJSON(status: Int, message: String, param: String? = nil) -> JSON {
        let type: String
        switch status {
        case 400: type = "BadRequestError"
        case 401: type = "AuthenticationError"
        case 403: type = "PermissionDeniedError"
        case 404: type = "NotFoundError"
        case 405: type = "MethodNotAllowedError"
        case 422: type = "UnprocessableEntityError"
        case 429: type = "RateLimitError"
        case 500...: type = "InternalServerError"
        default: type = "BadRequestError"
        }
        return ["error": ["message": .string(message), "type": .string(type), "param": param.map { .string($0) } ?? .null, "code": .int(status)]]
    }

    static func errorResponse(status: Int, message: String) -> Response {
        jsonResponse(errorJSON(status: status, message: message), status: HTTPResponse.Status(code: status))
    }
}

/// Adds the pod/port headers to every response and turns thrown errors into vLLM error bodies.
struct SimHeadersMiddleware<Context: RequestContext>: RouterMiddleware {
    let state: ServerState
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let e as SimError {
            response = OpenAIRoutes.errorResponse(status: e.status, message: e.message)
        } catch let e as HTTPError {
            let code = Int(e.status.code)
            response = OpenAIRoutes.errorResponse(status: code, message: e.body ?? (code == 404 ? "Not Found" : e.status.reasonPhrase))
        } catch {
            response = OpenAIRoutes.errorResponse(status: 500, message: "\(error)")
        }
        response.headers[OpenAIRoutes.podField] = state.podName
        let port = state.port
        response.headers[OpenAIRoutes.portField] = String(port)
        response.headers[OpenAIRoutes.backendField] = "b\(port)"
        return response
    }
}

enum API: Sendable { case completions, chat }

/// A parsed generation request.
struct GenRequest: Sendable {
    var api: API
    var prompts: [[Int]]
    var maxTokens: Int
    var stream: Bool
    var includeUsage: Bool
    var continuousUsage: Bool
    /// Decode side of P/D: KV arrives from a remote prefill.
    var remotePrefill: Bool
    /// Prefill side of P/D: answer after one token with kv_transfer_params.
    var remoteDecode: Bool
}

/// A request admitted into the running set, ready to produce tokens.
struct Generation: Sendable {
    let lease: Lease
    let promptTokens: Int
    let cachedTokens: Int
    let hashes: [UInt64]
    let ttft: Double
    let slowFactor: Double
    let queueSeconds: Double
    let pieces: [String]
    let arrived: ContinuousClock.Instant
}

struct Handler: Sendable {
    let state: ServerState
    var config: SimulatorConfig { state.config }

    // MARK: parsing

    func body(_ req: Request) async throws -> JSON {
        var r = req
        let buf = try await r.collectBody(upTo: OpenAIRoutes.maxBody)
        do {
            return try JSON.parse(buf.readableBytesView)
        } catch {
            throw SimError(400, "request body is not valid JSON")
        }
    }

    func checkModel(_ json: JSON) throws {
        if let m = json["model"]?.stringValue, m != config.model {
            throw SimError(404, "The model `\(m)` does not exist.")
        }
    }

    /// Token ids of a completions `prompt` (string | [string] | [int] | [[int]]): one list per prompt.
    func promptTokens(_ p: JSON?) throws -> [[Int]] {
        let tok = state.tokenizer
        switch p {
        case .string(let s)?: return [tok.encode(s)]
        case .array(let a)? where !a.isEmpty:
            if a.allSatisfy({ $0.intValue != nil }) { return [a.map { $0.intValue! }] }
            var out: [[Int]] = []
            for e in a {
                switch e {
                case .string(let s): out.append(tok.encode(s))
                case .array(let ids):
                    let ints = ids.compactMap(\.intValue)
                    guard ints.count == ids.count else { throw SimError(400, "prompt token lists must contain integers") }
                    out.append(ints)
                default: throw SimError(400, "prompt must be a string, a list of strings, a list of token ids or a list of token id lists")
                }
            }
            return out
        default:
            throw SimError(400, "prompt must be a string, a list of strings, a list of token ids or a list of token id lists")
        }
    }

    func chatTokens(_ json: JSON) throws -> [Int] {
        guard let msgs = json["messages"], let messages = ChatTemplate.messages(from: msgs), !messages.isEmpty else {
            throw SimError(400, "messages must be a non-empty list of {role, content}")
        }
        let addGen = json["add_generation_prompt"]?.boolValue ?? true
        return state.tokenizer.encode(ChatTemplate.render(messages, addGenerationPrompt: addGen))
    }

    func parseGen(_ json: JSON, api: API) throws -> GenRequest {
        try checkModel(json)
        let prompts: [[Int]]
        switch api {
        case .completions: prompts = try promptTokens(json["prompt"])
        case .chat: prompts = [try chatTokens(json)]
        }
        if prompts.contains(where: \.isEmpty) { throw SimError(400, "prompt must not be empty") }
        let limit: JSON? = api == .chat ? (json["max_completion_tokens"].flatMap { $0.isNull ? nil : $0 } ?? json["max_tokens"]) : json["max_tokens"]
        var maxTokens = 16
        if let l = limit, !l.isNull {
            guard let v = l.intValue, v >= 1 else { throw SimError(400, "max_tokens must be at least 1") }
            maxTokens = v
        }
        let stream = json["stream"]?.boolValue ?? false
        let so = json["stream_options"]
        let kv = json["kv_transfer_params"]
        var remotePrefill = kv?["do_remote_prefill"]?.boolValue ?? false
        var remoteDecode = kv?["do_remote_decode"]?.boolValue ?? false
        switch config.role {
        case .prefill: remoteDecode = true; remotePrefill = false
        case .decode: remoteDecode = false
        case .both: if remoteDecode { remotePrefill = false }
        }
        if remoteDecode { maxTokens = 1 }
        for p in prompts where p.count + maxTokens > config.maxModelLen {
            throw SimError(400, "This model's maximum context length is \(config.maxModelLen) tokens. However, you requested \(p.count + maxTokens) tokens (\(p.count) in the messages, \(maxTokens) in the completion). Please reduce the length of the messages or completion.")
        }
        if stream && prompts.count > 1 { throw SimError(400, "streaming is not supported for batched prompts by this simulator") }
        return GenRequest(
            api: api, prompts: prompts, maxTokens: maxTokens, stream: stream,
            includeUsage: so?["include_usage"]?.boolValue ?? false,
            continuousUsage: so?["continuous_usage_stats"]?.boolValue ?? false,
            remotePrefill: remotePrefill, remoteDecode: remoteDecode)
    }

    // MARK: simulation

    /// Admit one prompt (may wait) and compute its timing.
    func prepare(tokens: [Int], maxTokens: Int, remotePrefill: Bool, slow: Bool) async throws -> Generation {
        let arrived = ContinuousClock.now
        let hashes = KVCache.blockHashes(tokens: tokens, blockSize: config.blockSize)
        let adm = try await state.admit(hashes: hashes, promptTokens: tokens.count)
        let lease = Lease(state: state, hashes: hashes)
        let slowFactor = slow ? config.slowFactor : 1
        let cached: Int
        let ttft: Double
        if remotePrefill {
            cached = tokens.count
            ttft = state.latency.kvTransferTime(promptTokens: tokens.count) * slowFactor
        } else {
            cached = min(tokens.count, adm.matchedBlocks * config.blockSize)
            ttft = state.latency.timeToFirstToken(promptTokens: tokens.count, cachedTokens: cached, running: adm.running) * slowFactor
        }
        var seed: UInt64 = 0xCBF2_9CE4_8422_2325
        for t in tokens { seed = (seed ^ UInt64(UInt32(truncatingIfNeeded: t))) &* 0x0000_0100_0000_01B3 }
        return Generation(
            lease: lease, promptTokens: tokens.count, cachedTokens: cached, hashes: hashes, ttft: ttft,
            slowFactor: slowFactor, queueSeconds: adm.queueSeconds,
            pieces: SimText.outputPieces(count: maxTokens, seed: seed), arrived: arrived)
    }

    /// Produce the tokens of `g` on the simulated schedule, calling `emit` for each.
    func produce(_ g: Generation, emit: (Int, String) async throws -> Void) async throws {
        let start = ContinuousClock.now
        var deadline = start + .nanoseconds(Int64(g.ttft * 1e9))
        var emitted = 0
        var firstAt: ContinuousClock.Instant? = nil
        do {
            for (i, piece) in g.pieces.enumerated() {
                if i > 0 {
                    deadline = deadline + .nanoseconds(Int64(state.latency.interToken(running: state.running) * g.slowFactor * 1e9))
                }
                try await Task.sleep(until: deadline, clock: .continuous)
                if i == 0 { firstAt = .now }
                try await emit(i, piece)
                emitted += 1
            }
            let end = ContinuousClock.now
            g.lease.finish(generated: emitted, success: true,
                           ttft: firstAt.map { ($0 - g.arrived).seconds }, e2e: (end - g.arrived).seconds)
        } catch {
            g.lease.finish(generated: emitted, success: false)
            throw error
        }
    }

    func usage(_ g: Generation, completion: Int) -> JSON {
        usage(prompt: g.promptTokens, cached: g.cachedTokens, completion: completion)
    }

    func usage(prompt: Int, cached: Int, completion: Int) -> JSON {
        ["prompt_tokens": .int(prompt), "completion_tokens": .int(completion), "total_tokens": .int(prompt + completion),
         "prompt_tokens_details": ["cached_tokens": .int(cached)]]
    }

    func kvTransferParams(_ g: Generation) -> JSON {
        ["do_remote_prefill": true, "do_remote_decode": false, "remote_engine_id": .string(state.podName),
         "remote_block_ids": .array(g.hashes.map { .int(Int($0 & 0x7FFF_FFFF)) }),
         "remote_host": .string(config.host), "remote_port": .int(state.port), "tp_size": 1]
    }

    func generate(_ req: Request, api: API) async throws -> Response {
        let json = try await body(req)
        let gr = try parseGen(json, api: api)
        let faults = state.drawFaults()
        if faults.fail {
            state.countFailure()
            throw SimError(500, "simulated failure (fail-rate \(config.failRate))")
        }
        let serial = state.nextSerial()
        let id = (api == .chat ? "chatcmpl-" : "cmpl-") + String(format: "%016llx", serial &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(state.index))
        let created = Int(Date().timeIntervalSince1970)
        let gens: [Generation]
        do {
            if gr.prompts.count == 1 {
                gens = [try await prepare(tokens: gr.prompts[0], maxTokens: gr.maxTokens, remotePrefill: gr.remotePrefill, slow: faults.slow)]
            } else {
                gens = try await withThrowingTaskGroup(of: (Int, Generation).self) { group in
                    for (i, p) in gr.prompts.enumerated() {
                        group.addTask { (i, try await prepare(tokens: p, maxTokens: gr.maxTokens, remotePrefill: gr.remotePrefill, slow: faults.slow)) }
                    }
                    var out: [(Int, Generation)] = []
                    for try await r in group { out.append(r) }
                    return out.sorted { $0.0 < $1.0 }.map(\.1)
                }
            }
        } catch let e as SimError {
            state.countFailure()
            throw e
        }
        let model = JSON.string(config.model)
        if gr.stream {
            return streamResponse(gens[0], gr: gr, id: id, created: created, model: model)
        }
        // Non-streaming: produce every prompt concurrently, then answer once.
        let texts: [String] = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for (i, g) in gens.enumerated() {
                group.addTask {
                    var text = ""
                    try await produce(g) { _, piece in text += piece }
                    return (i, text)
                }
            }
            var out = Array(repeating: "", count: gens.count)
            for try await (i, t) in group { out[i] = t }
            return out
        }
        var choices: [JSON] = []
        for (i, text) in texts.enumerated() {
            switch api {
            case .completions:
                choices.append(["index": .int(i), "text": .string(text), "logprobs": nil, "finish_reason": "length", "stop_reason": nil, "prompt_logprobs": nil])
            case .chat:
                choices.append(["index": .int(i), "message": ["role": "assistant", "content": .string(text), "tool_calls": []],
                                "logprobs": nil, "finish_reason": "length", "stop_reason": nil])
            }
        }
        let prompt = gens.reduce(0) { $0 + $1.promptTokens }
        let cached = gens.reduce(0) { $0 + $1.cachedTokens }
        let completion = gens.reduce(0) { $0 + $1.pieces.count }
        var obj: [String: JSON] = [
            "id": .string(id), "object": api == .chat ? "chat.completion" : "text_completion", "created": .int(created),
            "model": model, "choices": .array(choices), "usage": usage(prompt: prompt, cached: cached, completion: completion),
            "kv_transfer_params": gr.remoteDecode ? kvTransferParams(gens[0]) : nil,
        ]
        if api == .chat { obj["prompt_logprobs"] = nil }
        var headers: HTTPFields = [:]
        headers[OpenAIRoutes.ttftField] = String(format: "%.3f", gens.map(\.ttft).max()! * 1000)
        headers[OpenAIRoutes.queueField] = String(format: "%.3f", gens.map(\.queueSeconds).max()! * 1000)
        headers[OpenAIRoutes.cachedField] = String(cached)
        return OpenAIRoutes.jsonResponse(.object(obj), headers: headers)
    }

    func streamResponse(_ g: Generation, gr: GenRequest, id: String, created: Int, model: JSON) -> Response {
        let object: JSON = gr.api == .chat ? "chat.completion.chunk" : "text_completion"
        let n = g.pieces.count
        let handler = self
        let body = ResponseBody { writer in
            func send(_ j: JSON) async throws {
                try await writer.write(ByteBuffer(string: "data: " + j.serialized() + "\n\n"))
            }
            try await handler.produce(g) { i, piece in
                let last = i == n - 1
                let finish: JSON = last ? "length" : nil
                var choice: [String: JSON] = ["index": 0, "logprobs": nil, "finish_reason": finish]
                switch gr.api {
                case .completions:
                    choice["text"] = .string(piece)
                    choice["stop_reason"] = nil
                case .chat:
                    choice["delta"] = i == 0 ? ["role": "assistant", "content": .string(piece)] : ["content": .string(piece)]
                }
                var chunk: [String: JSON] = ["id": .string(id), "object": object, "created": .int(created), "model": model, "choices": [.object(choice)]]
                if gr.continuousUsage { chunk["usage"] = handler.usage(g, completion: i + 1) }
                if last && gr.remoteDecode { chunk["kv_transfer_params"] = handler.kvTransferParams(g) }
                try await send(.object(chunk))
            }
            if gr.includeUsage {
                try await send(["id": .string(id), "object": object, "created": .int(created), "model": model, "choices": [],
                                "usage": handler.usage(g, completion: n)])
            }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache"], body: body)
    }

    // MARK: tokenisation endpoints

    func tokenize(_ req: Request) async throws -> Response {
        let json = try await body(req)
        try checkModel(json)
        let tokens: [Int]
        var text: String? = nil
        if json["messages"] != nil {
            guard let messages = ChatTemplate.messages(from: json["messages"]!) else { throw SimError(400, "invalid messages") }
            let t = ChatTemplate.render(messages, addGenerationPrompt: json["add_generation_prompt"]?.boolValue ?? true)
            text = t
            tokens = state.tokenizer.encode(t)
        } else if let s = json["prompt"]?.stringValue {
            text = s
            tokens = state.tokenizer.encode(s)
        } else {
            throw SimError(400, "tokenize needs `prompt` (string) or `messages`")
        }
        var strs: JSON = nil
        if json["return_token_strs"]?.boolValue == true, let text {
            strs = .array(state.tokenizer.pieces(text).map { .string($0) })
        }
        return OpenAIRoutes.jsonResponse(["count": .int(tokens.count), "max_model_len": .int(config.maxModelLen),
                                          "tokens": .array(tokens.map { .int($0) }), "token_strs": strs])
    }

    func renderCompletions(_ req: Request) async throws -> Response {
        let json = try await body(req)
        try checkModel(json)
        let prompts = try promptTokens(json["prompt"])
        return OpenAIRoutes.jsonResponse(.array(prompts.map { ["token_ids": .array($0.map { .int($0) })] }))
    }

    func renderChat(_ req: Request) async throws -> Response {
        let json = try await body(req)
        try checkModel(json)
        let tokens = try chatTokens(json)
        return OpenAIRoutes.jsonResponse(["token_ids": .array(tokens.map { .int($0) })])
    }

    func models() -> Response {
        OpenAIRoutes.jsonResponse([
            "object": "list",
            "data": [["id": .string(config.model), "object": "model", "created": .int(state.startedAt), "owned_by": "vllm",
                      "root": .string(config.model), "parent": nil, "max_model_len": .int(config.maxModelLen), "permission": []]],
        ])
    }
}
