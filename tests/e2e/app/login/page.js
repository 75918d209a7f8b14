// The login page the gateway's login_redirect sends browsers to (a real
// portal would start the OAuth flow here).
export default function Login() {
  return <h1 id="login">login</h1>;
}
