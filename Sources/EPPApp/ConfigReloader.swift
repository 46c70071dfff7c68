import EPPObservability
import EPPPicker
import Logging
import EPPLock

/// Hot reload of the EndpointPickerConfig file: the new file is parsed and validated off the request path
/// and swapped in atomically between requests; an invalid file keeps the old config, is logged and counted.
final class ConfigReloader: Sendable {
    let path: String
    private let holder: ConfigHolder
    private let logger: Logger
    private let results: Family<Counter>
    private let serial = Lock(0)
    /// The environment of the first config (same prefix indexes, local and Redis).
    private let environment: PluginEnvironment

    init(path: String, holder: ConfigHolder, registry: MetricsRegistry, logger: Logger, environment: PluginEnvironment = .shared) {
        self.path = path
        self.environment = environment
        self.holder = holder
        self.logger = logger
        results = registry.counter("epp_config_reloads_total", "EndpointPickerConfig reloads by result (success, error).",
                                   labels: ["result"])
        _ = results.labels("success")
        _ = results.labels("error")
    }

    /// Reloads now (any thread; reloads are serialised). Returns true when the new config is in force.
    @discardableResult
    func reload(reason: String) -> Bool {
        serial.withLock { _ in
            do {
                let config = try PickerConfig.load(path: path, environment: environment)
                holder.swap(config)
                results.labels("success").increment()
                for w in config.warnings { logger.warning("config", metadata: ["warning": "\(w)"]) }
                logger.info("config reloaded", metadata: ["path": "\(path)", "reason": "\(reason)", "generation": "\(holder.generation)"])
                return true
            } catch {
                results.labels("error").increment()
                logger.error("config reload failed; keeping the previous config",
                             metadata: ["path": "\(path)", "reason": "\(reason)", "error": "\(error)"])
                return false
            }
        }
    }
}
