// Finding the user's wallet: EIP-6963 announcements first, window.ethereum (EIP-1193) as fallback.
import type { EIP1193Provider } from "viem";

export interface WalletInfo {
  uuid: string;
  name: string;
  icon: string;
  rdns: string;
}

export interface Wallet {
  info: WalletInfo;
  provider: EIP1193Provider;
}

const announced = new Map<string, Wallet>();

function onAnnounce(event: Event): void {
  const detail = (event as CustomEvent<Wallet>).detail;
  if (detail && detail.info && typeof detail.info.uuid === "string" && detail.provider) {
    announced.set(detail.info.uuid, { info: detail.info, provider: detail.provider });
  }
}

/** Starts listening for EIP-6963 announcements and asks wallets to announce themselves. */
export function listenForWallets(): void {
  window.addEventListener("eip6963:announceProvider", onAnnounce);
  window.dispatchEvent(new Event("eip6963:requestProvider"));
}

/** The wallets found: the EIP-6963 ones, else window.ethereum; waits briefly for late announcements. */
export async function discoverWallets(waitMs = 250): Promise<Wallet[]> {
  if (announced.size === 0) {
    window.dispatchEvent(new Event("eip6963:requestProvider"));
    await new Promise((resolve) => setTimeout(resolve, waitMs));
  }
  if (announced.size > 0) return [...announced.values()];
  const injected = (window as unknown as { ethereum?: EIP1193Provider }).ethereum;
  if (injected) {
    return [{ info: { uuid: "window.ethereum", name: "Browser wallet", icon: "", rdns: "window.ethereum" }, provider: injected }];
  }
  return [];
}
