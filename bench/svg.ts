/**
 * The benchmark's plots, drawn from its results as SVG: mean latency per
 * operation (log scale) against the number of concurrent processes, one
 * line per server and operation, with the original moddb project's figures
 * dashed (latencySvg); and any line plot of latency against a linear x, such
 * as p50 and p99 against offered load (lineSvg).
 */

export interface Series {
	label: string;
	/** [processes, milliseconds] */
	points: Array<[number, number]>;
}

/** The original moddb project's table, on 2017 hardware: [operation, ms at 1 process, ms at 10]. */
export const MODDB: ReadonlyArray<readonly [string, number, number]> = [
	['read', 0.93, 2.36],
	['write', 3.08, 20.56],
	['read/write', 4.05, 25.69],
];

const WIDTH = 760;
const HEIGHT = 480;
const LEFT = 70;
const RIGHT = 230;
const TOP = 50;
const BOTTOM = 60;
const COLORS = ['#1f77b4', '#2ca02c', '#d62728', '#9467bd', '#ff7f0e', '#8c564b', '#7f7f7f', '#e377c2', '#17becf'];

function xmlText(text: string): string {
	return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function latencySvg(measured: Series[], subtitle: string): string {
	const reference: Series[] = MODDB.map(([mix, one, ten]) => ({
		label: `moddb 2017 ${mix}`,
		points: [
			[1, one],
			[10, ten],
		],
	}));
	const all = [...measured, ...reference];
	const values = all.flatMap(series => series.points.map(([, ms]) => ms)).filter(ms => ms > 0);
	const low = 10 ** Math.floor(Math.log10(Math.min(...values)));
	const high = 10 ** Math.ceil(Math.log10(Math.max(...values)));
	const plotWidth = WIDTH - LEFT - RIGHT;
	const plotHeight = HEIGHT - TOP - BOTTOM;
	const x = (processes: number) => LEFT + ((processes - 1) / 9) * plotWidth;
	const y = (ms: number) => TOP + plotHeight - ((Math.log10(ms) - Math.log10(low)) / (Math.log10(high) - Math.log10(low))) * plotHeight;
	const out: string[] = [
		`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
		`<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
		`<text x="${LEFT}" y="20" font-size="15" font-weight="bold">Mean latency per operation against concurrent processes</text>`,
		`<text x="${LEFT}" y="38" fill="#555">${xmlText(subtitle)}; dashed: the original moddb (2017 hardware)</text>`,
	];
	for (let decade = low; decade <= high * 1.0001; decade *= 10) {
		for (const step of [1, 2, 5]) {
			const ms = decade * step;
			if (ms > high * 1.0001) break;
			out.push(
				`<line x1="${LEFT}" x2="${LEFT + plotWidth}" y1="${y(ms).toFixed(1)}" y2="${y(ms).toFixed(1)}" stroke="${step === 1 ? '#ccc' : '#eee'}"/>`,
			);
			out.push(`<text x="${LEFT - 6}" y="${(y(ms) + 4).toFixed(1)}" text-anchor="end">${Number(ms.toPrecision(2))}</text>`);
		}
	}
	for (const processes of [1, 2, 4, 6, 8, 10]) {
		out.push(`<line x1="${x(processes)}" x2="${x(processes)}" y1="${TOP}" y2="${TOP + plotHeight}" stroke="#eee"/>`);
		out.push(`<text x="${x(processes)}" y="${TOP + plotHeight + 18}" text-anchor="middle">${processes}</text>`);
	}
	out.push(
		`<rect x="${LEFT}" y="${TOP}" width="${plotWidth}" height="${plotHeight}" fill="none" stroke="#333"/>`,
		`<text x="${LEFT + plotWidth / 2}" y="${HEIGHT - 15}" text-anchor="middle">concurrent processes (each one request at a time)</text>`,
		`<text transform="translate(18 ${TOP + plotHeight / 2}) rotate(-90)" text-anchor="middle">mean latency per operation (ms, log scale)</text>`,
	);
	all.forEach((series, i) => {
		const dashed = i >= measured.length;
		const color = dashed ? ['#444', '#888', '#bbb'][i - measured.length] : COLORS[i % COLORS.length];
		const path = series.points.map(([p, ms], j) => `${j ? 'L' : 'M'}${x(p).toFixed(1)} ${y(ms).toFixed(1)}`).join(' ');
		out.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="2"${dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
		for (const [p, ms] of series.points) out.push(`<circle cx="${x(p).toFixed(1)}" cy="${y(ms).toFixed(1)}" r="3" fill="${color}"/>`);
		const ly = TOP + 10 + i * 20;
		out.push(
			`<line x1="${WIDTH - RIGHT + 15}" x2="${WIDTH - RIGHT + 40}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
			`<text x="${WIDTH - RIGHT + 46}" y="${ly + 4}">${xmlText(series.label)}</text>`,
		);
	});
	out.push('</svg>');
	return `${out.join('\n')}\n`;
}

export interface Plot {
	title: string;
	subtitle: string;
	xLabel: string;
	yLabel: string;
	/** [x, y]; y on a log scale. Series whose label ends in "p99" are drawn dashed. */
	series: Series[];
	/** A vertical marker line, e.g. a saturation point. */
	marker?: { x: number; label: string };
}

/** A line plot: linear x from 0, log y, one coloured line per series (the pairs of a server share a colour). */
export function lineSvg(plot: Plot): string {
	const values = plot.series.flatMap(series => series.points.map(([, y]) => y)).filter(y => y > 0);
	const xs = plot.series.flatMap(series => series.points.map(([x]) => x));
	const low = 10 ** Math.floor(Math.log10(Math.min(...values)));
	const high = 10 ** Math.ceil(Math.log10(Math.max(...values)));
	const xHigh = niceCeiling(Math.max(...xs, plot.marker?.x ?? 0));
	const plotWidth = WIDTH - LEFT - RIGHT;
	const plotHeight = HEIGHT - TOP - BOTTOM;
	const x = (value: number) => LEFT + (value / xHigh) * plotWidth;
	const y = (value: number) =>
		TOP + plotHeight - ((Math.log10(value) - Math.log10(low)) / (Math.log10(high) - Math.log10(low))) * plotHeight;
	const out: string[] = [
		`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
		`<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
		`<text x="${LEFT}" y="20" font-size="15" font-weight="bold">${xmlText(plot.title)}</text>`,
		`<text x="${LEFT}" y="38" fill="#555">${xmlText(plot.subtitle)}</text>`,
	];
	for (let decade = low; decade <= high * 1.0001; decade *= 10) {
		for (const step of [1, 2, 5]) {
			const value = decade * step;
			if (value > high * 1.0001) break;
			out.push(
				`<line x1="${LEFT}" x2="${LEFT + plotWidth}" y1="${y(value).toFixed(1)}" y2="${y(value).toFixed(1)}" stroke="${step === 1 ? '#ccc' : '#eee'}"/>`,
				`<text x="${LEFT - 6}" y="${(y(value) + 4).toFixed(1)}" text-anchor="end">${Number(value.toPrecision(2))}</text>`,
			);
		}
	}
	for (let i = 0; i <= 5; i++) {
		const value = (xHigh * i) / 5;
		out.push(
			`<line x1="${x(value).toFixed(1)}" x2="${x(value).toFixed(1)}" y1="${TOP}" y2="${TOP + plotHeight}" stroke="#eee"/>`,
			`<text x="${x(value).toFixed(1)}" y="${TOP + plotHeight + 18}" text-anchor="middle">${Number(value.toPrecision(3))}</text>`,
		);
	}
	if (plot.marker) {
		const mx = x(plot.marker.x).toFixed(1);
		out.push(
			`<line x1="${mx}" x2="${mx}" y1="${TOP}" y2="${TOP + plotHeight}" stroke="#888" stroke-dasharray="2 3"/>`,
			`<text x="${mx}" y="${TOP + 12}" fill="#555" text-anchor="end" transform="rotate(-90 ${mx} ${TOP + 12})" dy="-4">${xmlText(plot.marker.label)}</text>`,
		);
	}
	out.push(
		`<rect x="${LEFT}" y="${TOP}" width="${plotWidth}" height="${plotHeight}" fill="none" stroke="#333"/>`,
		`<text x="${LEFT + plotWidth / 2}" y="${HEIGHT - 15}" text-anchor="middle">${xmlText(plot.xLabel)}</text>`,
		`<text transform="translate(18 ${TOP + plotHeight / 2}) rotate(-90)" text-anchor="middle">${xmlText(plot.yLabel)}</text>`,
	);
	const owners = [...new Set(plot.series.map(series => series.label.replace(/ p\d+$/, '')))];
	plot.series.forEach((series, i) => {
		const color = COLORS[owners.indexOf(series.label.replace(/ p\d+$/, '')) % COLORS.length];
		const dashed = series.label.endsWith('p99');
		const points = [...series.points].sort(([a], [b]) => a - b).filter(([, value]) => value > 0);
		const path = points.map(([px, py], j) => `${j ? 'L' : 'M'}${x(px).toFixed(1)} ${y(py).toFixed(1)}`).join(' ');
		out.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="2"${dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
		for (const [px, py] of points) out.push(`<circle cx="${x(px).toFixed(1)}" cy="${y(py).toFixed(1)}" r="3" fill="${color}"/>`);
		const ly = TOP + 10 + i * 20;
		out.push(
			`<line x1="${WIDTH - RIGHT + 15}" x2="${WIDTH - RIGHT + 40}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
			`<text x="${WIDTH - RIGHT + 46}" y="${ly + 4}">${xmlText(series.label)}</text>`,
		);
	});
	out.push('</svg>');
	return `${out.join('\n')}\n`;
}

/** The smallest 1, 2 or 5 × 10^n at or above a value. */
function niceCeiling(value: number): number {
	if (value <= 0) return 1;
	const decade = 10 ** Math.floor(Math.log10(value));
	return ([1, 2, 5, 10].find(step => step * decade >= value) ?? 10) * decade;
}
