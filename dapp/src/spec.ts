// The job form: its values, their checks against the contract's limits() (the same checks
// submitJob makes, so a spec the page accepts is not refused for its shape), and the JobSpec.
const encoder = new TextEncoder();

export interface Limits {
  maxVcpus: number;
  maxRam: number;
  maxDisk: number;
  maxNetworkDownload: number;
  maxNetworkUpload: number;
  maxHours: number;
  maxAppLength: number;
  maxCommandLineLength: number;
  maxInputFiles: number;
  maxInputFileLength: number;
  maxCallbackGasLimit: number;
}

export interface FormValues {
  app: string;
  commandLine: string;
  vcpus: string;
  ram: string;
  disk: string;
  networkDownload: string;
  networkUpload: string;
  hours: string;
  inputs: { filename: string; url: string }[];
  callbackGas: string;
}

export interface JobSpec {
  app: string;
  commandLine: string;
  specs: { vcpus: number; ram: number; disk: number; networkDownload: number; networkUpload: number };
  maxHours: number;
  inputFiles: { filename: string; url: string }[];
}

export interface Checked {
  /** Field test id (`app`, `vcpus`, `input-url-0`, ...) -> what is wrong with it. */
  errors: Map<string, string>;
  /** Problems of the form as a whole (too many input files). */
  formErrors: string[];
  spec: JobSpec | null;
  callbackGasLimit: number;
}

const byteLength = (text: string): number => encoder.encode(text).length;

/** The bridge's rule for a file name: `/`-separated, no empty, `.` or `..` segment, no `\`,
 * no control character (it fails, and refunds, a job whose input file breaks it). */
function cleanPath(name: string): boolean {
  if (name.includes("\\") || /[\u0000-\u001f\u007f]/.test(name)) return false;
  return name.split("/").every((segment) => segment !== "" && segment !== "." && segment !== "..");
}

function integer(
  errors: Map<string, string>,
  field: string,
  label: string,
  raw: string,
  min: number,
  max: number,
  limitName: string,
): number {
  const text = raw.trim();
  if (text === "") {
    errors.set(field, `${label} is required.`);
    return 0;
  }
  if (!/^\d+$/.test(text)) {
    errors.set(field, `${label} must be a whole number.`);
    return 0;
  }
  const value = Number(text);
  if (value < min) errors.set(field, `${label} must be at least ${min}.`);
  else if (value > max) errors.set(field, `${label} must be at most ${max} (the contract's ${limitName}).`);
  return value;
}

function text(
  errors: Map<string, string>,
  field: string,
  label: string,
  value: string,
  max: number,
  limitName: string,
): void {
  const length = byteLength(value);
  if (value.trim() === "") errors.set(field, `${label} is required.`);
  else if (length > max) errors.set(field, `${label} is ${length} bytes; the contract's ${limitName} is ${max}.`);
}

/** Checks every field against `limits`; the spec is set only when nothing is wrong. */
export function checkForm(values: FormValues, limits: Limits): Checked {
  const errors = new Map<string, string>();
  const formErrors: string[] = [];
  text(errors, "app", "The app", values.app, limits.maxAppLength, "maxAppLength");
  text(errors, "command-line", "The command line", values.commandLine, limits.maxCommandLineLength, "maxCommandLineLength");
  const vcpus = integer(errors, "vcpus", "vCPUs", values.vcpus, 1, limits.maxVcpus, "maxVcpus");
  const ram = integer(errors, "ram", "RAM", values.ram, 0, limits.maxRam, "maxRam");
  const disk = integer(errors, "disk", "Disk", values.disk, 0, limits.maxDisk, "maxDisk");
  const down = integer(errors, "network-download", "Network download", values.networkDownload, 0, limits.maxNetworkDownload, "maxNetworkDownload");
  const up = integer(errors, "network-upload", "Network upload", values.networkUpload, 0, limits.maxNetworkUpload, "maxNetworkUpload");
  const hours = integer(errors, "hours", "Hours", values.hours, 1, limits.maxHours, "maxHours");
  const callbackGasLimit = integer(errors, "callback-gas", "Callback gas", values.callbackGas, 0, limits.maxCallbackGasLimit, "maxCallbackGasLimit");
  if (values.inputs.length > limits.maxInputFiles) {
    formErrors.push(`${values.inputs.length} input files; the contract allows at most ${limits.maxInputFiles} (maxInputFiles).`);
  }
  values.inputs.forEach((input, i) => {
    if (input.filename.trim() === "") errors.set(`input-filename-${i}`, `Input file ${i + 1} needs a filename.`);
    else if (!cleanPath(input.filename)) {
      errors.set(
        `input-filename-${i}`,
        `Input file ${i + 1}: a relative path (a/b.txt), without empty, . or .. parts, backslashes or control characters.`,
      );
    }
    if (input.url.trim() === "") errors.set(`input-url-${i}`, `Input file ${i + 1} needs a URL.`);
    else if (!/^https?:\/\/[^\s/]+/i.test(input.url) || !URL.canParse(input.url)) {
      errors.set(`input-url-${i}`, `Input file ${i + 1}: not an http(s) URL.`);
    }
    const length = byteLength(input.filename) + byteLength(input.url);
    if (!errors.has(`input-url-${i}`) && length > limits.maxInputFileLength) {
      errors.set(`input-url-${i}`, `Input file ${i + 1}: filename plus URL is ${length} bytes; the contract's maxInputFileLength is ${limits.maxInputFileLength}.`);
    }
  });
  const ok = errors.size === 0 && formErrors.length === 0;
  return {
    errors,
    formErrors,
    callbackGasLimit,
    spec: ok
      ? {
          app: values.app,
          commandLine: values.commandLine,
          specs: { vcpus, ram, disk, networkDownload: down, networkUpload: up },
          maxHours: hours,
          inputFiles: values.inputs.map((f) => ({ filename: f.filename, url: f.url })),
        }
      : null,
  };
}
