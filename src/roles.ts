/**
 * What is particular to each module when `./run` loads and unloads it, in
 * one place. lifecycle.ts does the same make → insmod → rmmod for every
 * module and calls these hooks; a target (targets.ts) knows nothing of them.
 */
import { DEFAULT_BACKUP, startDaemon, stopDaemon } from './kvd-control.js';
import { log } from './log.js';
import type { ModuleName } from './modules.js';
import type { Target } from './targets.js';

/** What a hook may read of a load: the request and the parameters it ended with. */
export interface LoadContext {
	target: Target;
	/** Server only: start the backup daemon beside it (default true). */
	daemon?: boolean;
	/** Server only: the daemon's backup file in the target. */
	backup?: string;
}

export interface ModuleRole {
	/**
	 * Parameters given in the lab unless the user gave them: a lab is reached
	 * from this machine and other labs through the guest's own interfaces.
	 */
	labParams?: Record<string, string>;
	/** The parameter that names the UDP port the module serves (made reachable from this machine), and its default. */
	udpPort?: { param: string; fallback: number };
	/** After an old copy is unloaded, before insmod. */
	beforeLoad?(context: LoadContext): Promise<void>;
	/** After insmod: returns what to tell the user of it, if anything. */
	afterLoad?(context: LoadContext): Promise<{ daemonPid?: number; backup?: string }>;
	/** Before the target stops (`./run down`): nothing acknowledged may be lost. */
	beforeStop?(target: Target): Promise<void>;
}

const server: ModuleRole = {
	// Port forwards arrive on the guest's eth0 and other labs on eth1, not on
	// its loopback; the guest cannot route off this machine, so listening on
	// all of its addresses exposes nothing beyond this machine's 127.0.0.1.
	labParams: { bind: '0.0.0.0' },
	udpPort: { param: 'port', fallback: 3000 },
	async beforeLoad({ target, daemon }) {
		// --no-daemon: a running kvd would register with the new module on its own.
		if (daemon === false && (await stopDaemon(target))) {
			log.info('stopped the backup daemon kvd (--no-daemon), after it confirmed every change');
		}
	},
	async afterLoad({ target, daemon, backup = DEFAULT_BACKUP }) {
		if (daemon === false) {
			return {};
		}
		return { daemonPid: await startDaemon(target, backup), backup };
	},
	// Nothing before rmmod: the module's unload waits for kvd to save the last changes (journal.c).
	async beforeStop(target) {
		await stopDaemon(target).catch(error => log.warn(`could not stop kvd: ${(error as Error).message}`));
	},
};

export const ROLES: Record<ModuleName, ModuleRole> = {
	udp_server: server,
	udp_client: {},
};
