"""Certificates made with openssl for tests and benchmarks: a self-signed one, a throwaway CA
and the leaves it signs (ECDSA P-256 or RSA, a chosen serial, a validity that starts next
year), and a certificate's serial number."""
import os
import subprocess
import time


def openssl(*args, **kw):
    """openssl with args (paths may be Path objects); fails on a non-zero exit."""
    return subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, **kw)


def make_cert(directory, name="cert"):
    """A self-signed ECDSA P-256 certificate for localhost; returns (cert, key) paths:
    NAME.pem and NAME-key.pem in directory."""
    cert = os.path.join(directory, f"{name}.pem")
    key = os.path.join(directory, f"{name}-key.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert)
    os.chmod(key, 0o600)
    return cert, key


def make_ca(d):
    """A throwaway CA in folder d (a Path): ca.pem and ca.key; returns (cert, key) as str."""
    os.makedirs(d, exist_ok=True)
    cert, key = d / "ca.pem", d / "ca.key"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    openssl("req", "-x509", "-new", "-key", key, "-subj", "/CN=hearth test CA", "-days", "2",
            "-out", cert)
    return str(cert), str(key)


def make_leaf(d, ca, name, key_type="ec", days=2, serial=None, start=None, sans=None,
              usage="serverAuth", subject=None):
    """A server certificate for name (or for sans: "DNS:a.test", "IP:127.0.0.1"...) signed by
    ca (cert, key), its files in d; start="future": valid from next year only; usage: its
    extended key usage ("clientAuth" for a client certificate); subject: its subject, if not
    /CN=name. Returns (cert_path, key_path)."""
    tag = f"{name}-{key_type}-{serial or 'x'}-{start or 'now'}"
    key, csr, crt = d / f"{tag}.key", d / f"{tag}.csr", d / f"{tag}.crt"
    if key_type == "ec":
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    else:
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key)
    openssl("req", "-new", "-key", key, "-subj", subject or f"/CN={name}", "-out", csr)
    if start:
        return future_leaf(d, ca, name, key, crt)
    ext = d / f"{tag}.ext"
    key_usage = "digitalSignature" if key_type == "ec" else "digitalSignature,keyEncipherment"
    ext.write_text(f"subjectAltName={','.join(sans or [f'DNS:{name}'])}\n"
                   f"basicConstraints=CA:FALSE\nkeyUsage={key_usage}\n"
                   f"extendedKeyUsage={usage}\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-extfile", ext,
            "-out", crt, "-set_serial", serial or int.from_bytes(os.urandom(8), "big"),
            "-days", days)
    return str(crt), str(key)


def future_leaf(d, ca, name, key, crt):
    """A certificate whose validity starts next year (openssl ca can set a start date)."""
    db = d / "ca.db"
    db.write_text("")
    (d / "ca.serial").write_text("1000\n")
    conf = d / "ca.cnf"
    conf.write_text(f"""[ca]
default_ca = c
[c]
database = {db}
serial = {d / 'ca.serial'}
new_certs_dir = {d}
default_md = sha256
policy = p
unique_subject = no
[p]
commonName = supplied
""")
    csr = d / "future.csr"
    openssl("req", "-new", "-key", key, "-subj", f"/CN={name}", "-out", csr)
    year = time.gmtime().tm_year + 1
    openssl("ca", "-batch", "-config", conf, "-cert", ca[0], "-keyfile", ca[1], "-in", csr,
            "-out", crt, "-startdate", f"{year}0101000000Z", "-enddate", f"{year}1231000000Z",
            "-notext")
    return str(crt), str(key)


def make_test_pki(d, *sans):
    """A throwaway CA (ca.pem, ca.key) and a certificate it signed for sans ("DNS:localhost",
    "IP:127.0.0.1"...: cert.pem, key.pem), all in folder d (a Path), which is returned."""
    ca = make_ca(d)
    cert, key = make_leaf(d, ca, "test", sans=sans)
    os.rename(cert, d / "cert.pem")
    os.rename(key, d / "key.pem")
    return d


def serial_of(pem_bytes_or_der):
    """The serial number (an int) of the certificate in the bytes given."""
    out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem_bytes_or_der,
                         capture_output=True, check=True).stdout.decode()
    return int(out.strip().split("=")[1], 16)


class LazyPKI(dict):
    """A throwaway CA in folder d (self["ca"]: its certificate; self["ca_pair"]: (cert, key);
    self["dir"]: d) and the leaves it signs, each made the first time it is asked for, so a
    test file pays only for the certificates it uses: self[name] is make_leaf(d, ca,
    **leaves[name]), a (cert, key) pair."""

    def __init__(self, d, leaves):
        ca = make_ca(d)
        super().__init__(ca=ca[0], ca_pair=ca, dir=d)
        self.leaves = leaves

    def __missing__(self, name):
        self[name] = make_leaf(self["dir"], self["ca_pair"], **self.leaves[name])
        return self[name]
