// The ce-bridge dapp: connect a wallet, price and submit a Charity Engine job to the JobEscrow,
// follow your jobs live, cancel, reclaim, withdraw refunds, and verify a completed job's result
// files against the on-chain result hash, all in the browser.
import {
  createPublicClient,
  createWalletClient,
  custom,
  defineChain,
  getAddress,
  http,
  numberToHex,
  parseEventLogs,
  type Address,
  type Chain,
  type Hex,
  type PublicClient,
  type WalletClient,
} from "viem";
import { jobEscrowAbi } from "../../abi/JobEscrow.ts";
import { eventsOf, submissionsOf } from "./chain.ts";
import { loadConfig, type DappConfig } from "./config.ts";
import { BridgeUnreachable, describeError, formatWei } from "./errors.ts";
import { checkForm, type Checked, type FormValues, type Limits } from "./spec.ts";
import { $, el, short } from "./dom.ts";
import { createJobRow, renderJob, TERMINAL, type JobView, type RowActions } from "./rows.ts";
import { resultHashOf, sha256Hex } from "./verify.ts";
import { discoverWallets, listenForWallets, type Wallet } from "./wallet.ts";

const POLL_MS = 1500;
/** Results larger than this are not downloaded into the page to be verified. */
const MAX_VERIFY_BYTES = 256 * 2 ** 20;

// ------------------------------------------------------------------ messages

function say(text: string, kind: "error" | "notice" = "notice"): void {
  const box = $("message");
  box.textContent = text;
  box.dataset.kind = kind;
}

function sayError(error: unknown): void {
  say(describeError(error), "error");
}

// ------------------------------------------------------------------ state

let config: DappConfig | null = null;
let chain: Chain | null = null;
let reader: PublicClient | null = null;
let wallet: Wallet | null = null;
let writer: WalletClient | null = null;
let account: Address | null = null;
let walletChainId: number | null = null;
let limits: Limits | null = null;
let scannedTo = -1n;
let chainTime = 0n;
let polling: number | undefined;
let refreshing = false;
let bridgeDown = false;
const jobs = new Map<bigint, JobView>();
const touched = new Set<string>();
let submitTried = false;
let quoteSeq = 0;
let quoteTimer: number | undefined;

const onRightChain = (): boolean => config !== null && walletChainId === config.chainId;

// ------------------------------------------------------------------ start

let configLoaded: Promise<void> = Promise.resolve();

function start(): void {
  listenForWallets();
  wireForm();
  $("connect").addEventListener("click", () => void connect());
  $("switch-chain").addEventListener("click", () => void switchChain());
  $("withdraw").addEventListener("click", () => void withdraw());
  configLoaded = loadEverything();
}

async function loadEverything(): Promise<void> {
  try {
    config = await loadConfig();
  } catch (error) {
    sayError(error);
    return;
  }
  chain = defineChain({
    id: config.chainId,
    name: `chain ${config.chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: config.rpcUrl ? [config.rpcUrl] : [] } },
  });
  $("contract-line").textContent = `JobEscrow ${config.contract} on chain ${config.chainId} · bridge ${config.apiUrl}`;
  if (config.rpcUrl) {
    reader = createPublicClient({ chain, transport: http(config.rpcUrl), pollingInterval: 1_000 });
    await loadLimits();
  }
}

async function loadLimits(): Promise<void> {
  if (!reader || !config) return;
  try {
    limits = await reader.readContract({ address: config.contract, abi: jobEscrowAbi, functionName: "limits" });
  } catch (error) {
    $("form-error").textContent = `Cannot check the job: the contract's limits could not be read. ${describeError(error)}`;
    return;
  }
  onFormChange();
}

// ------------------------------------------------------------------ wallet

async function connect(): Promise<void> {
  await configLoaded;
  if (!config) return; // why is already in the message
  const found = await discoverWallets();
  if (found.length === 0) {
    say("No wallet found: install a browser wallet, or import the development key that `ce-bridge demo --serve` prints.", "error");
    return;
  }
  if (found.length === 1) {
    await useWallet(found[0]!);
    return;
  }
  const choice = $("wallet-choice");
  choice.replaceChildren(
    ...found.map((w) => {
      const button = el("button", { type: "button", class: "secondary", "data-testid": `wallet-${w.info.rdns}` }, w.info.name);
      button.addEventListener("click", () => void useWallet(w));
      return button;
    }),
  );
  choice.hidden = false;
  (choice.firstElementChild as HTMLElement | null)?.focus();
}

async function useWallet(chosen: Wallet): Promise<void> {
  if (!config || !chain) return;
  $("wallet-choice").hidden = true;
  try {
    const accounts = (await chosen.provider.request({ method: "eth_requestAccounts" })) as string[];
    if (!accounts[0]) throw new Error("The wallet shared no account.");
    wallet = chosen;
    setAccount(getAddress(accounts[0]));
    walletChainId = Number(await chosen.provider.request({ method: "eth_chainId" }));
  } catch (error) {
    sayError(error);
    return;
  }
  chosen.provider.on?.("accountsChanged", (accounts: string[]) => {
    if (accounts[0]) setAccount(getAddress(accounts[0]));
    else disconnect();
  });
  chosen.provider.on?.("chainChanged", (id: string) => {
    walletChainId = Number(id);
    showChain();
    void afterChainChange();
  });
  if (!config.rpcUrl) {
    reader = createPublicClient({ chain, transport: custom(chosen.provider), pollingInterval: 1_000 });
  }
  say(`Connected ${wallet?.info.name ?? "wallet"}: ${account}.`);
  showChain();
  await afterChainChange();
  if (polling === undefined) polling = window.setInterval(() => void refresh(), POLL_MS);
}

/** Reads what needs the right chain once the wallet is on it (without a public RPC URL the page
 * reads through the wallet, so nothing is read while it is on another chain). */
async function afterChainChange(): Promise<void> {
  if (!config || (!config.rpcUrl && !onRightChain())) return;
  if (!limits) await loadLimits();
  void refresh();
}

function setAccount(address: Address): void {
  if (account !== address) {
    jobs.clear();
    $("jobs").replaceChildren();
    scannedTo = -1n;
  }
  account = address;
  if (wallet && chain) writer = createWalletClient({ account: address, chain, transport: custom(wallet.provider) });
  const shown = $("account");
  shown.textContent = address;
  shown.hidden = false;
  $("connect").textContent = "Connected";
  $("jobs-empty").textContent = "No jobs from this account yet.";
}

function disconnect(): void {
  account = null;
  writer = null;
  $("account").hidden = true;
  $("connect").textContent = "Connect wallet";
  say("The wallet disconnected this account.");
}

function showChain(): void {
  if (!config) return;
  const warning = $("chain-warning");
  if (walletChainId === null || onRightChain()) {
    warning.hidden = true;
    return;
  }
  $("chain-warning-text").textContent = `Your wallet is on chain ${walletChainId}; this dapp's contract is on chain ${config.chainId}.`;
  $("switch-chain").textContent = `Switch to chain ${config.chainId}`;
  warning.hidden = false;
}

async function switchChain(): Promise<void> {
  if (!wallet || !config) return;
  const chainId = numberToHex(config.chainId);
  try {
    await wallet.provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId }] });
  } catch (error) {
    const code = (error as { code?: number }).code;
    if (code !== 4902 || !config.rpcUrl) {
      sayError(error);
      return;
    }
    try {
      await wallet.provider.request({
        method: "wallet_addEthereumChain",
        params: [{ chainId, chainName: `chain ${config.chainId}`, rpcUrls: [config.rpcUrl], nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 } }],
      });
    } catch (addError) {
      sayError(addError);
      return;
    }
  }
  walletChainId = Number(await wallet.provider.request({ method: "eth_chainId" }));
  showChain();
  if (onRightChain()) say(`Switched to chain ${config.chainId}.`);
}

// ------------------------------------------------------------------ the form

const FIELDS = ["app", "command-line", "vcpus", "ram", "disk", "network-download", "network-upload", "hours", "callback-gas"];

function value(id: string): string {
  return (document.getElementById(id) as HTMLInputElement | HTMLTextAreaElement | null)?.value ?? "";
}

function inputCount(): number {
  return $("inputs").querySelectorAll(".input-row").length;
}

function formValues(): FormValues {
  const inputs = [];
  for (let i = 0; i < inputCount(); i++) inputs.push({ filename: value(`input-filename-${i}`), url: value(`input-url-${i}`) });
  return {
    app: value("app"),
    commandLine: value("command-line"),
    vcpus: value("vcpus"),
    ram: value("ram"),
    disk: value("disk"),
    networkDownload: value("network-download"),
    networkUpload: value("network-upload"),
    hours: value("hours"),
    inputs,
    callbackGas: value("callback-gas"),
  };
}

function inputRow(i: number, filename = "", url = ""): HTMLDivElement {
  const row = el("div", { class: "input-row" });
  const name = el("div", { class: "field" });
  name.append(
    el("label", { for: `input-filename-${i}` }, `File ${i + 1} name`),
    Object.assign(el("input", { id: `input-filename-${i}`, "data-testid": `input-filename-${i}`, autocomplete: "off", spellcheck: "false", "aria-describedby": `input-filename-${i}-error` }), { value: filename }),
    el("span", { class: "field-error", id: `input-filename-${i}-error`, "data-testid": `input-filename-${i}-error` }),
  );
  const link = el("div", { class: "field" });
  link.append(
    el("label", { for: `input-url-${i}` }, `File ${i + 1} URL`),
    Object.assign(el("input", { id: `input-url-${i}`, "data-testid": `input-url-${i}`, type: "url", autocomplete: "off", spellcheck: "false", "aria-describedby": `input-url-${i}-error` }), { value: url }),
    el("span", { class: "field-error", id: `input-url-${i}-error`, "data-testid": `input-url-${i}-error` }),
  );
  const remove = el("button", { type: "button", class: "secondary", "data-testid": `remove-input-${i}`, "aria-label": `Remove input file ${i + 1}` }, "Remove");
  remove.addEventListener("click", () => removeInput(i));
  row.append(name, link, remove);
  return row;
}

function removeInput(index: number): void {
  const values = formValues().inputs.filter((_, i) => i !== index);
  $("inputs").replaceChildren(...values.map((v, i) => inputRow(i, v.filename, v.url)));
  const next = document.getElementById(`input-filename-${Math.min(index, values.length - 1)}`) ?? $("add-input");
  next.focus();
  onFormChange();
}

function wireForm(): void {
  const form = $("job-form") as HTMLFormElement;
  form.addEventListener("input", (event) => {
    const target = event.target as HTMLElement;
    if (target.id) touched.add(target.id);
    onFormChange();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void submit();
  });
  $("add-input").addEventListener("click", () => {
    const i = inputCount();
    $("inputs").append(inputRow(i));
    (document.getElementById(`input-filename-${i}`) as HTMLInputElement).focus();
    onFormChange();
  });
}

function showErrors(checked: Checked): void {
  const all = [...FIELDS];
  for (let i = 0; i < inputCount(); i++) all.push(`input-filename-${i}`, `input-url-${i}`);
  const shown: string[] = [];
  for (const id of all) {
    const message = checked.errors.get(id);
    const visible = message !== undefined && (submitTried || touched.has(id));
    const input = document.getElementById(id);
    const box = document.getElementById(`${id}-error`);
    if (box) box.textContent = visible ? message : "";
    if (input) input.setAttribute("aria-invalid", visible ? "true" : "false");
    if (visible) shown.push(document.querySelector(`label[for="${id}"]`)?.textContent ?? id);
  }
  $("inputs-error").textContent = checked.formErrors.join(" ");
  const summary = [...checked.formErrors];
  if (shown.length > 0) summary.unshift(`Fix ${shown.length === 1 ? "this field" : "these fields"}: ${shown.join(", ")}.`);
  $("form-error").textContent = summary.join(" ");
}

function onFormChange(): Checked | null {
  if (!limits) return null;
  const checked = checkForm(formValues(), limits);
  showErrors(checked);
  const quote = $("quote");
  window.clearTimeout(quoteTimer);
  if (!checked.spec) {
    quoteSeq++;
    quote.textContent = "—";
    delete quote.dataset.wei;
    return checked;
  }
  quote.textContent = "…";
  quoteTimer = window.setTimeout(() => void updateQuote(checked), 200);
  return checked;
}

async function readQuote(checked: Checked): Promise<bigint> {
  if (!reader || !config || !checked.spec) throw new Error("No chain to ask for a quote: connect a wallet.");
  return reader.readContract({
    address: config.contract,
    abi: jobEscrowAbi,
    functionName: "quote",
    args: [checked.spec, checked.callbackGasLimit],
  });
}

async function updateQuote(checked: Checked): Promise<void> {
  const seq = ++quoteSeq;
  const quote = $("quote");
  try {
    const wei = await readQuote(checked);
    if (seq !== quoteSeq) return;
    quote.textContent = `${formatWei(wei)} (${wei} wei)`;
    quote.dataset.wei = wei.toString();
  } catch (error) {
    if (seq !== quoteSeq) return;
    quote.textContent = "—";
    delete quote.dataset.wei;
    $("form-error").textContent = describeError(error);
  }
}

// ------------------------------------------------------------------ transactions

function ready(): boolean {
  if (!account || !writer || !reader || !config) {
    say("Connect a wallet first.", "error");
    return false;
  }
  if (!onRightChain()) {
    say(`Switch your wallet to chain ${config.chainId} first.`, "error");
    return false;
  }
  return true;
}

async function send(
  label: string,
  functionName: "submitJob" | "cancelJob" | "reclaimExpired" | "withdraw",
  args: readonly unknown[],
  value?: bigint,
): Promise<Hex | null> {
  if (!reader || !writer || !config || !account) return null;
  const { request } = await reader.simulateContract({
    account,
    address: config.contract,
    abi: jobEscrowAbi,
    functionName,
    args,
    value,
  } as never);
  const hash = await writer.writeContract(request as never);
  say(`${label}: transaction ${short(hash)} sent; waiting for it to be mined…`);
  const receipt = await reader.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success") throw new Error(`${label}: transaction ${hash} reverted.`);
  return hash;
}

async function submit(): Promise<void> {
  submitTried = true;
  const checked = onFormChange();
  if (!checked) {
    $("form-error").textContent = "The contract's limits are not loaded yet: connect a wallet.";
    return;
  }
  if (!checked.spec) {
    const first = [...checked.errors.keys()][0];
    if (first) document.getElementById(first)?.focus();
    return;
  }
  if (!ready() || !reader || !config) return;
  const button = $("submit") as HTMLButtonElement;
  button.disabled = true;
  try {
    const price = await readQuote(checked);
    const hash = await send("Submit", "submitJob", [checked.spec, checked.callbackGasLimit], price);
    if (hash) {
      const receipt = await reader.getTransactionReceipt({ hash });
      const [event] = parseEventLogs({ abi: jobEscrowAbi, logs: receipt.logs, eventName: "JobSubmitted" });
      const id = event ? `#${event.args.jobId}` : "";
      say(`Job ${id} submitted, paying ${formatWei(price)}. The bridge takes it once it has enough confirmations.`);
    }
  } catch (error) {
    sayError(error);
  } finally {
    button.disabled = false;
  }
  void refresh();
}

async function act(job: JobView, label: string, functionName: "cancelJob" | "reclaimExpired"): Promise<void> {
  if (!ready()) return;
  try {
    await send(`${label} job #${job.id}`, functionName, [job.id]);
    say(`${label} job #${job.id}: done.`);
  } catch (error) {
    sayError(error);
  }
  void refresh();
}

const rowActions: RowActions = {
  cancel: (job) => void act(job, "Cancel", "cancelJob"),
  reclaim: (job) => void act(job, "Reclaim", "reclaimExpired"),
};

async function withdraw(): Promise<void> {
  if (!ready()) return;
  try {
    await send("Withdraw", "withdraw", []);
    say("Withdrawn: your credit was paid to your account.");
  } catch (error) {
    sayError(error);
  }
  void refresh();
}

// ------------------------------------------------------------------ jobs

async function refresh(): Promise<void> {
  if (refreshing || !reader || !config || !account) return;
  if (!config.rpcUrl && !onRightChain()) return;
  refreshing = true;
  try {
    const block = await reader.getBlock({ blockTag: "latest" });
    const head = block.number;
    chainTime = block.timestamp;
    if (head > scannedTo) {
      const from = scannedTo < 0n ? config.fromBlock : scannedTo + 1n;
      for (const s of await submissionsOf(reader, config.contract, account, from, head)) {
        if (!jobs.has(s.jobId)) {
          jobs.set(s.jobId, createJobRow($("jobs"), s.jobId, s.payment, s.app, s.commandLine, rowActions));
        }
      }
      const events = await eventsOf(reader, config.contract, [...jobs.keys()], from, head);
      for (const e of events) jobs.get(e.jobId)?.events.set(`${e.txHash}:${e.logIndex}`, e);
      scannedTo = head;
    }
    await Promise.all(
      [...jobs.values()].map(async (job) => {
        if (TERMINAL.has(job.status) && (job.status !== 4 || job.verify === "done" || job.verify === "too-large")) return; // final
        const onchain = await reader!.readContract({ address: config!.contract, abi: jobEscrowAbi, functionName: "getJob", args: [job.id] });
        job.status = onchain.status;
        job.cancelRequested = onchain.cancelRequested;
        job.deadline = onchain.deadline;
        job.resultHash = onchain.resultHash;
      }),
    );
    const credit = await reader.readContract({ address: config.contract, abi: jobEscrowAbi, functionName: "creditOf", args: [account] });
    showCredit(credit);
    await bridgeNotes();
    for (const job of jobs.values()) {
      if (job.status === 4 && (job.verify === "none" || job.verify === "error")) await verify(job);
      renderJob(job, { chainTime, explorerUrl: config.explorerUrl });
    }
    $("jobs-empty").hidden = jobs.size > 0;
  } catch (error) {
    sayError(error);
  } finally {
    refreshing = false;
  }
}

function showCredit(wei: bigint): void {
  const credits = $("credits");
  credits.dataset.wei = wei.toString();
  credits.textContent = `${formatWei(wei)} (${wei} wei)`;
  ($("withdraw") as HTMLButtonElement).disabled = wei === 0n;
}

async function bridgeGet(path: string): Promise<Response> {
  const apiUrl = config!.apiUrl;
  let response: Response;
  try {
    response = await fetch(`${apiUrl}${path}`, { cache: "no-store" });
  } catch {
    throw new BridgeUnreachable(apiUrl, "no answer");
  }
  if (response.status >= 500) throw new BridgeUnreachable(apiUrl, `HTTP ${response.status}`);
  if (bridgeDown) {
    bridgeDown = false;
    say("The bridge answers again.");
  }
  return response;
}

async function bridgeNotes(): Promise<void> {
  // The newest open jobs only: one request each per round.
  const open = [...jobs.values()].filter((job) => !TERMINAL.has(job.status)).sort((a, b) => (a.id < b.id ? 1 : -1)).slice(0, 20);
  try {
    for (const job of open) {
      const response = await bridgeGet(`/jobs/${job.id}`);
      if (response.status === 404) {
        job.bridgeNote = "The bridge has not seen this job yet.";
        continue;
      }
      const body = (await response.json()) as { state?: string; confirmations?: number; confirmations_required?: number };
      job.bridgeNote =
        body.state === "pending"
          ? `The bridge saw it: ${body.confirmations ?? 0} of ${body.confirmations_required ?? 0} confirmations.`
          : `Bridge: ${body.state ?? "unknown"}.`;
    }
  } catch (error) {
    if (!bridgeDown) sayError(error);
    bridgeDown = true;
  }
}

function fileUrl(id: bigint, path: string): string {
  return `${config!.apiUrl}/jobs/${id}/outputs/${path.split("/").map(encodeURIComponent).join("/")}`;
}

async function verify(job: JobView): Promise<void> {
  job.verify = "running";
  renderJob(job, { chainTime, explorerUrl: config?.explorerUrl ?? null });
  try {
    const listing = await bridgeGet(`/jobs/${job.id}/outputs/`);
    if (!listing.ok) {
      job.verify = "error";
      job.bridgeNote = `The bridge has no result files for this job (HTTP ${listing.status}).`;
      return;
    }
    const body = (await listing.json()) as { files: { path: string; size: number; sha256: string }[] };
    const total = body.files.reduce((sum, f) => sum + f.size, 0);
    if (total > MAX_VERIFY_BYTES) {
      job.verify = "too-large";
      job.files = body.files.map((f) => ({ path: f.path, url: fileUrl(job.id, f.path), size: f.size, matchesListing: true }));
      job.computedHash = `${(total / 2 ** 20).toFixed(0)} MiB`;
      return;
    }
    const files = await Promise.all(
      body.files.map(async (f) => {
        const response = await bridgeGet(`/jobs/${job.id}/outputs/${f.path.split("/").map(encodeURIComponent).join("/")}`);
        if (!response.ok) throw new BridgeUnreachable(config!.apiUrl, `HTTP ${response.status} for ${f.path}`);
        return { path: f.path, bytes: new Uint8Array(await response.arrayBuffer()) };
      }),
    );
    const listed = new Map(body.files.map((f) => [f.path, f.sha256.toLowerCase()]));
    job.files = await Promise.all(
      files.map(async (f) => ({
        path: f.path,
        url: fileUrl(job.id, f.path),
        size: f.bytes.length,
        matchesListing: (await sha256Hex(f.bytes)) === listed.get(f.path),
      })),
    );
    job.computedHash = await resultHashOf(files);
    job.verified = job.computedHash.toLowerCase() === job.resultHash.toLowerCase();
    job.verify = "done";
  } catch (error) {
    job.verify = "error";
    if (!bridgeDown) sayError(error);
    bridgeDown = error instanceof BridgeUnreachable;
  }
}

start();
