export default function Target() {
  return <h1 id="target">redirect target</h1>;
}
