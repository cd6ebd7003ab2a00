"""Administration: every change an operator makes to what tokensvc trusts (clients, their
secrets, resources, federations, a person's grants), one implementation shared by the admin
API (`tokensvc.http.admin`) and the command line (`tokensvc.cli`). Each change is validated by
`tokensvc.registration`, written through the store protocols and audited (`audit`)."""
