/**
 * Module parameters, read from the built `.ko` itself (`modinfo -p`), so the
 * C source stays the single source of truth. Our modules follow a convention
 * in MODULE_PARM_DESC that this file reads:
 *
 *   "(range MIN-MAX, default D)"        for numbers
 *   "(IPv4 address, default A.B.C.D)"   for addresses
 *
 * `modinfo -p` prints one `name:description (type)` line per parameter.
 */
import { EXIT_USAGE, UserError } from './errors.js';
const INTEGER_BOUNDS = {
    byte: [0n, 255n],
    short: [-(2n ** 15n), 2n ** 15n - 1n],
    ushort: [0n, 2n ** 16n - 1n],
    int: [-(2n ** 31n), 2n ** 31n - 1n],
    uint: [0n, 2n ** 32n - 1n],
    long: [-(2n ** 63n), 2n ** 63n - 1n],
    ulong: [0n, 2n ** 64n - 1n],
    ullong: [0n, 2n ** 64n - 1n],
    hexint: [0n, 2n ** 32n - 1n],
};
export function parseModinfoParams(text) {
    const specs = [];
    for (const line of text.split('\n')) {
        const match = /^([A-Za-z_]\w*):(.*?)\s*(?:\((\w+)\))?$/.exec(line.trim());
        if (!match) {
            continue;
        }
        const [, name = '', description = '', type = 'unknown'] = match;
        const spec = { name, type, description: description.trim() };
        const range = /\brange (-?\d+)\s*-\s*(-?\d+)/.exec(description);
        if (range) {
            spec.min = BigInt(range[1] ?? 0);
            spec.max = BigInt(range[2] ?? 0);
        }
        if (/\bIPv4 address\b/.test(description)) {
            spec.ipv4 = true;
        }
        const defaultValue = /\bdefault ([^),]+)/.exec(description)?.[1]?.trim();
        if (defaultValue !== undefined) {
            spec.defaultValue = defaultValue;
        }
        specs.push(spec);
    }
    return specs;
}
export function isIPv4(value) {
    const parts = value.split('.');
    return parts.length === 4 && parts.every(part => /^(0|[1-9]\d{0,2})$/.test(part) && Number(part) <= 255);
}
/** Why `value` is not acceptable for `spec`, or undefined when it is. */
export function checkValue(spec, value) {
    const bounds = INTEGER_BOUNDS[spec.type];
    if (bounds) {
        const pattern = spec.type === 'hexint' ? /^(0x[\da-f]+|\d+)$/i : /^-?\d+$/;
        if (!pattern.test(value)) {
            return `${spec.name} must be a whole number, not "${value}"`;
        }
        const number = BigInt(value);
        const min = spec.min ?? bounds[0];
        const max = spec.max ?? bounds[1];
        if (number < min || number > max) {
            return `${spec.name} must be between ${min} and ${max}, not ${value}`;
        }
    }
    else if (spec.type === 'bool' || spec.type === 'invbool') {
        if (!/^(1|0|y|n|Y|N|true|false)$/.test(value)) {
            return `${spec.name} must be a boolean (1/0, y/n), not "${value}"`;
        }
    }
    else if (spec.type === 'charp' || spec.type === 'string') {
        if (value === '') {
            return `${spec.name} must not be empty`;
        }
        if (/[\s\0]/.test(value)) {
            return `${spec.name} must not contain spaces or control characters`;
        }
    }
    if (spec.ipv4 && !isIPv4(value)) {
        return `${spec.name} must be an IPv4 address like 127.0.0.1, not "${value}"`;
    }
    return undefined;
}
export function describeParams(specs) {
    const width = Math.max(...specs.map(spec => spec.name.length), 4);
    return specs.map(spec => `  ${spec.name.padEnd(width)}  ${spec.description} (${spec.type})`).join('\n');
}
/**
 * Turns `name=value` words into checked assignments, or throws a UserError
 * that lists the module's parameters.
 */
export function validateParams(moduleName, specs, words) {
    const assignments = [];
    const problems = [];
    for (const word of words) {
        const equals = word.indexOf('=');
        if (equals <= 0) {
            problems.push(`"${word}" is not name=value`);
            continue;
        }
        const name = word.slice(0, equals);
        const value = word.slice(equals + 1);
        const spec = specs.find(candidate => candidate.name === name);
        if (!spec) {
            problems.push(`${moduleName} has no parameter "${name}"`);
            continue;
        }
        if (assignments.some(assignment => assignment.name === name)) {
            problems.push(`${name} is given twice`);
            continue;
        }
        const problem = checkValue(spec, value);
        if (problem) {
            problems.push(problem);
            continue;
        }
        assignments.push({ name, value });
    }
    if (problems.length > 0) {
        throw new UserError(problems.join('; '), {
            hint: `${moduleName} takes these parameters:\n${describeParams(specs)}`,
            exitCode: EXIT_USAGE,
        });
    }
    return assignments;
}
/** The value a parameter will have: the assigned one, else the documented default. */
export function effectiveValue(specs, assignments, name) {
    return assignments.find(assignment => assignment.name === name)?.value ?? specs.find(spec => spec.name === name)?.defaultValue;
}
//# sourceMappingURL=params.js.map