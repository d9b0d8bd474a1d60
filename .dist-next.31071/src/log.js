/**
 * The orchestrator's diagnostic log: pino to stderr, so stdout stays for
 * command output that scripts may pipe. Human-readable lines, or JSON lines
 * with --log-json or KUDP_LOG_JSON=1. The level is info, debug with -v, or
 * KUDP_LOG_LEVEL (a pino level: trace, debug, info, warn, error, silent).
 * A flag given on the command line wins over the environment.
 */
import { pino } from 'pino';
import pretty from 'pino-pretty';
import { ENV, settings } from './settings.js';
let warnedLevel = false;
export function createLogger(options = {}) {
    const wanted = options.level ?? settings.logLevel;
    const known = wanted in pino.levels.values || wanted === 'silent';
    const level = known ? wanted : 'info';
    const json = options.json ?? settings.logJson;
    const logger = json ? pino({ level, base: undefined }, pino.destination(2)) : prettyLogger(level);
    if (!known && !warnedLevel) {
        warnedLevel = true;
        logger.warn(`${ENV.logLevel}=${wanted} is not a log level (${Object.keys(pino.levels.values).join(', ')}, silent); using info`);
    }
    return logger;
}
function prettyLogger(level) {
    return pino({ level, base: undefined }, pretty({
        destination: 2,
        sync: true,
        colorize: process.stderr.isTTY,
        ignore: 'pid,hostname,time',
        messageFormat: '{msg}',
        singleLine: true,
    }));
}
/** A logger shared by the whole process, replaced by the CLI once options are parsed. */
export let log = createLogger();
export function setLogger(logger) {
    log = logger;
}
//# sourceMappingURL=log.js.map