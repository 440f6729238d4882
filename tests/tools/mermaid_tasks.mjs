// Parses a mermaid gantt chart (stdin) with the real mermaid library (npm) and prints its
// tasks as JSON: [name, start ms, end ms, crit, done]. Usage: node mermaid_tasks.mjs NPM_DIR
import { pathToFileURL } from 'node:url';
import { readFileSync } from 'node:fs';

const dir = process.argv[2];
const { default: mermaid } = await import(
  pathToFileURL(`${dir}/node_modules/mermaid/dist/mermaid.core.mjs`).href
);
const text = readFileSync(0, 'utf8');
await mermaid.parse(text);
const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
const tasks = diagram.db.getTasks().map((t) => [
  t.task.trim(), t.startTime.getTime(), t.endTime.getTime(), Boolean(t.crit), Boolean(t.done),
]);
console.log(JSON.stringify(tasks));
