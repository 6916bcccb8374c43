// One row of "Your jobs": its DOM, built once and updated in place (so focus and keyboard
// position survive the page's polling), and how a job's state is shown in it.
import type { Hex } from "viem";
import type { ChainEvent } from "./chain.ts";
import { el, short } from "./dom.ts";
import { formatWei } from "./errors.ts";

export const STATUS = ["None", "Submitted", "Accepted", "Running", "Completed", "Failed", "Cancelled", "Expired"] as const;
export const TERMINAL = new Set([4, 5, 6, 7]);

export interface JobView {
  id: bigint;
  status: number;
  cancelRequested: boolean;
  deadline: bigint;
  resultHash: Hex;
  paid: bigint;
  app: string;
  commandLine: string;
  events: Map<string, ChainEvent>;
  bridgeNote: string;
  verify: "none" | "running" | "done" | "error" | "too-large";
  verified: boolean | null;
  computedHash: string;
  files: { path: string; url: string; size: number; matchesListing: boolean }[];
  row: JobRow;
}

export interface JobRow {
  li: HTMLLIElement;
  status: HTMLSpanElement;
  meta: HTMLParagraphElement;
  bridge: HTMLParagraphElement;
  cancel: HTMLButtonElement;
  reclaim: HTMLButtonElement;
  outputs: HTMLDivElement;
  verify: HTMLParagraphElement;
  timeline: HTMLOListElement;
}

export interface RowActions {
  cancel(job: JobView): void;
  reclaim(job: JobView): void;
}

/** What rendering needs besides the job: the chain's time and the explorer for links. */
export interface RenderContext {
  chainTime: bigint;
  explorerUrl: string | null;
}

/** Builds job `id`'s row and inserts it into `list`, newest first. */
export function createJobRow(
  list: HTMLElement,
  id: bigint,
  paid: bigint,
  app: string,
  commandLine: string,
  actions: RowActions,
): JobView {
  const li = el("li", { class: "job", "data-testid": `job-row-${id}`, "data-status": "Submitted" });
  const head = el("div", { class: "job-head" });
  const status = el("span", { class: "status" }, "Submitted");
  head.append(el("span", { class: "job-title" }, `Job #${id}`), status, el("code", {}, app));
  const meta = el("p", { class: "job-meta" });
  const bridge = el("p", { class: "job-meta" });
  const buttons = el("div", { class: "job-actions" });
  const cancel = el("button", { type: "button", "data-testid": `cancel-${id}` }, "Cancel");
  const reclaim = el("button", { type: "button", "data-testid": `reclaim-${id}` }, "Reclaim payment");
  buttons.append(cancel, reclaim);
  const outputs = el("div", { class: "outputs", "data-testid": `outputs-${id}` });
  const verifyLine = el("p", { class: "verify", "data-testid": `verify-${id}`, "aria-live": "polite" });
  const details = el("details");
  const timeline = el("ol", { class: "timeline" });
  details.append(el("summary", {}, "Timeline"), timeline);
  li.append(head, el("p", { class: "job-meta" }, commandLine), meta, bridge, buttons, outputs, verifyLine, details);
  const row: JobRow = { li, status, meta, bridge, cancel, reclaim, outputs, verify: verifyLine, timeline };
  const job: JobView = {
    id, status: 1, cancelRequested: false, deadline: 0n, resultHash: "0x", paid, app, commandLine,
    events: new Map(), bridgeNote: "", verify: "none", verified: null, computedHash: "", files: [], row,
  };
  cancel.addEventListener("click", () => actions.cancel(job));
  reclaim.addEventListener("click", () => actions.reclaim(job));
  const after = [...list.children].find((child) => BigInt((child as HTMLElement).dataset.testid!.slice(8)) < id);
  list.insertBefore(li, after ?? null);
  return job;
}

function txLink(hash: Hex, explorerUrl: string | null): HTMLElement {
  if (explorerUrl) {
    return el("a", { href: `${explorerUrl}/tx/${hash}`, target: "_blank", rel: "noopener", class: "mono" }, short(hash));
  }
  return el("code", { title: hash }, hash);
}

function showFiles(job: JobView): void {
  const list = el("ul");
  for (const f of job.files) {
    const item = el("li");
    item.append(el("a", { href: f.url, download: f.path.split("/").pop() ?? f.path }, f.path), ` (${f.size} bytes)`);
    if (!f.matchesListing) item.append(el("strong", { class: "bad" }, " differs from the hash the bridge lists for it"));
    list.append(item);
  }
  job.row.outputs.replaceChildren(el("p", {}, `Result files (${job.files.length}):`), list);
}

/** Shows `job`'s current state in its row. */
export function renderJob(job: JobView, { chainTime, explorerUrl }: RenderContext): void {
  const r = job.row;
  const name = STATUS[job.status] ?? `status ${job.status}`;
  r.li.dataset.status = name;
  r.status.textContent = name + (job.cancelRequested && !TERMINAL.has(job.status) ? " (cancel requested)" : "");
  const deadline = job.deadline > 0n ? new Date(Number(job.deadline) * 1000).toLocaleString() : "—";
  r.meta.textContent = `Paid ${formatWei(job.paid)} · deadline ${deadline}`;
  r.bridge.textContent = TERMINAL.has(job.status) ? "" : job.bridgeNote;
  r.cancel.hidden = !(job.status === 1 || ((job.status === 2 || job.status === 3) && !job.cancelRequested));
  r.reclaim.hidden = !(job.status >= 1 && job.status <= 3 && job.deadline > 0n && chainTime > job.deadline);

  const events = [...job.events.values()].sort((a, b) =>
    a.blockNumber === b.blockNumber ? a.logIndex - b.logIndex : a.blockNumber < b.blockNumber ? -1 : 1,
  );
  if (r.timeline.children.length !== events.length) {
    r.timeline.replaceChildren(
      ...events.map((e) => {
        const item = el("li");
        item.append(`${e.name}${e.detail ? ` (${e.detail})` : ""}, block ${e.blockNumber}, tx `, txLink(e.txHash, explorerUrl));
        return item;
      }),
    );
  }

  if (job.status !== 4) {
    r.outputs.replaceChildren();
    r.verify.textContent = "";
    return;
  }
  if (job.verify === "running") r.verify.textContent = "Checking the result files against the on-chain hash…";
  if (job.verify === "error") r.verify.textContent = "The result files could not be checked yet.";
  if (job.verify === "too-large" && r.outputs.childElementCount === 0) {
    showFiles(job);
    r.verify.textContent = `The result files (${job.computedHash}) are too large to check in the browser: download them and check them with sha256sum (README, "Result hash") against ${job.resultHash}.`;
  }
  if (job.verify === "done" && r.verify.dataset.verified === undefined) {
    showFiles(job);
    r.verify.dataset.verified = String(job.verified);
    r.verify.textContent = job.verified
      ? `✓ Verified: the files hash to the on-chain result hash ${job.resultHash}.`
      : `✗ Verification failed: the files hash to ${job.computedHash}, but the on-chain result hash is ${job.resultHash}. Do not trust these files.`;
  }
}
