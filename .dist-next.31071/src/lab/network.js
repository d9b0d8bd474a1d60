/**
 * The labs' private network: every lab guest of this checkout has a second
 * interface, eth1, on one virtual Ethernet segment, 10.0.9.0/24, so a module
 * in one guest can talk to a module in another, as the original client and
 * server did between two machines.
 *
 * The segment is a QEMU multicast socket hub (`-netdev dgram` with a
 * multicast remote): every guest's QEMU joins one multicast group on this
 * machine's loopback interface, and each Ethernet frame a guest sends is one
 * UDP datagram to that group, which every other guest's QEMU receives. No
 * server to start or stop, and any number of guests. Frames stay on this
 * machine: QEMU joins the group on 127.0.0.1 only and sends with
 * IP_MULTICAST_IF=127.0.0.1 and the default multicast TTL of 1, so the
 * datagrams go out on `lo` and nowhere else (`/proc/net/igmp` lists the group
 * under `lo` only; two-hosts.test.ts checks it). No interface of this machine
 * gets an address on 10.0.9.0/24, and the guests route nothing but that /24
 * over eth1 (no default route: see guest-init.sh).
 *
 * The group and port are derived from the checkout's `.lab` directory, so two
 * clones of the project on one machine have two separate networks.
 *
 * Addresses: `.lab/network.json` maps each lab name to its host number N
 * (address 10.0.9.N, MAC 52:54:00:0a:09:NN), read and written under a file
 * lock. A lab keeps its number for as long as its directory `.lab/NAME`
 * exists, across reboots; a new lab takes the lowest free number from 2 to
 * 254 (.1 is left for a future gateway-like role, .255 is broadcast). When
 * all are taken, the number of a lab that is not running is reused; when none
 * is free, booting another lab fails with a clear error.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ifMissing, messageOf, UserError } from '../errors.js';
import { writeFileAtomically } from '../files.js';
import { withFileLock } from '../lock.js';
export const LAB_NETWORK = '10.0.9.0/24';
const PREFIX = '10.0.9.';
const FIRST_HOST = 2;
const LAST_HOST = 254;
const LOCK_TIMEOUT_MS = 30_000;
/** The multicast group and UDP port of this checkout's network (its `.lab` directory). */
export function hubOf(labRoot) {
    const hash = createHash('sha256').update(path.resolve(labRoot)).digest();
    // 239.255.0.0/16: administratively scoped (RFC 2365), never routed beyond a site.
    return { group: `239.255.${hash[0]}.${hash[1]}`, port: 20_000 + (hash.readUInt16BE(2) % 20_000) };
}
export function networkOf(labRoot, host) {
    if (!Number.isInteger(host) || host < FIRST_HOST || host > LAST_HOST) {
        throw new Error(`bad host number ${host} on ${LAB_NETWORK}`);
    }
    return {
        address: `${PREFIX}${host}`,
        prefixLength: 24,
        mac: `52:54:00:0a:09:${host.toString(16).padStart(2, '0')}`,
        hub: hubOf(labRoot),
    };
}
/** The QEMU options that put a guest on the network (its second NIC, eth1 in the guest). */
export function qemuNetworkArgs(network) {
    const { group, port } = network.hub;
    // local.host picks the interface (lo) QEMU joins the group on and sends
    // from; QEMU 7.2 wants a local.port too, which a multicast hub ignores.
    return [
        '-netdev',
        `dgram,id=n1,remote.type=inet,remote.host=${group},remote.port=${port},local.type=inet,local.host=127.0.0.1,local.port=0`,
        '-device',
        `virtio-net-device,netdev=n1,mac=${network.mac}`,
    ];
}
/** `.lab/network.json`: lab name → host number. */
async function readRegistry(file) {
    const text = await readFile(file, 'utf8').catch(ifMissing(undefined));
    if (text === undefined) {
        return new Map();
    }
    let registry;
    try {
        registry = JSON.parse(text);
    }
    catch (error) {
        throw corrupt(file, messageOf(error));
    }
    const hosts = registry?.hosts;
    if (typeof hosts !== 'object' || hosts === null || !Object.values(hosts).every(n => Number.isInteger(n))) {
        throw corrupt(file, 'it does not map lab names to host numbers');
    }
    return new Map(Object.entries(hosts));
}
async function writeRegistry(file, hosts) {
    await writeFileAtomically(file, `${JSON.stringify({ network: LAB_NETWORK, hosts: Object.fromEntries(hosts) }, null, 2)}\n`);
}
function corrupt(file, reason) {
    return new UserError(`the lab network's address registry ${file} is corrupt (${reason})`, {
        hint: `stop the labs (./run down --lab NAME) and remove it: rm '${file}'; addresses are assigned afresh`,
    });
}
/**
 * The host number of lab `name` on the network: the one it had, or a free
 * one. `inUse(other)` says whether another lab is running or booting, whose
 * number must not be taken from it.
 */
export async function assignHost(labRoot, name, inUse) {
    await mkdir(labRoot, { recursive: true });
    const file = path.join(labRoot, 'network.json');
    return withFileLock(path.join(labRoot, 'network.lock'), LOCK_TIMEOUT_MS, async () => {
        const hosts = await readRegistry(file);
        // A lab whose directory is gone (./run test sweeps its test labs) gives its number back.
        for (const other of hosts.keys()) {
            if (other !== name && !existsSync(path.join(labRoot, other))) {
                hosts.delete(other);
            }
        }
        let host = hosts.get(name);
        const shared = [...hosts].some(([other, n]) => other !== name && n === host);
        if (host === undefined || host < FIRST_HOST || host > LAST_HOST || shared) {
            host = await freeHost(hosts, name, inUse);
            hosts.set(name, host);
        }
        await writeRegistry(file, hosts);
        return host;
    });
}
async function freeHost(hosts, name, inUse) {
    const taken = new Set([...hosts].flatMap(([other, n]) => (other === name ? [] : [n])));
    for (let n = FIRST_HOST; n <= LAST_HOST; n++) {
        if (!taken.has(n)) {
            return n;
        }
    }
    // Every number belongs to a lab: take one from a lab that is down.
    for (const [other, n] of hosts) {
        if (other !== name && !(await inUse(other))) {
            hosts.delete(other);
            return n;
        }
    }
    throw new UserError(`no free address on the labs' network ${LAB_NETWORK}: ${LAST_HOST - FIRST_HOST + 1} labs are running`, {
        hint: 'stop some of them: ./run down --lab NAME',
    });
}
//# sourceMappingURL=network.js.map