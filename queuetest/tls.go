package queuetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"path/filepath"
	"syscall"
	"time"
)

// certificateFiles are the paths of a throwaway CA's certificate and of a
// server certificate and key it signed.
type certificateFiles struct {
	rootCert, serverCert, serverKey string
}

// writeCertificates makes a self-signed CA and a server certificate for
// localhost, 127.0.0.1 and ::1, valid for a day, and writes them into dir
// (the key readable by the cluster's user only, as postgres requires).
func writeCertificates(dir string, cred *syscall.Credential) (certificateFiles, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return certificateFiles{}, err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "esync queuetest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return certificateFiles{}, err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return certificateFiles{}, err
	}
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return certificateFiles{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return certificateFiles{}, err
	}
	f := certificateFiles{
		rootCert:   filepath.Join(dir, "root.crt"),
		serverCert: filepath.Join(dir, "server.crt"),
		serverKey:  filepath.Join(dir, "server.key"),
	}
	pemText := func(kind string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}))
	}
	if err := writeOwned(f.rootCert, pemText("CERTIFICATE", caDER), cred, 0o644); err != nil {
		return f, err
	}
	if err := writeOwned(f.serverCert, pemText("CERTIFICATE", srvDER), cred, 0o644); err != nil {
		return f, err
	}
	if err := writeOwned(f.serverKey, pemText("PRIVATE KEY", keyDER), cred, 0o600); err != nil {
		return f, err
	}
	return f, nil
}
